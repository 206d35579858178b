//! Payload filters: a webhook may carry a CEL expression over the event's JSON body; a
//! delivery is attempted only when it is true.
//!
//! The language is the Common Expression Language (the `cel` crate's parser and
//! interpreter). A filter reads two variables: `body`, the decoded event body, and
//! `event_type`. CEL has no loops of its own, only the comprehension macros (`all`,
//! `exists`, `exists_one`, `map`, `filter`); the rules checked at parse bound the cost of
//! an evaluation to about the filter's size times the body's:
//!
//! - the source has at most [`MAX_FILTER_BYTES`] and nests at most [`MAX_FILTER_DEPTH`]
//!   levels;
//! - no comprehension inside another, so no work is quadratic in the body;
//! - inside a comprehension's predicate only its own element is read, never `body` or
//!   `event_type`, so no iteration copies more than its element.

use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock};

use cel::common::ast::{EntryExpr, Expr};
use cel::{Context, Env, IdedExpr, Value};

/// The longest filter accepted.
pub const MAX_FILTER_BYTES: usize = 2048;
/// The deepest nesting of a filter's expression.
pub const MAX_FILTER_DEPTH: u16 = 32;

/// The parser's stack: many times what a filter within the limits needs.
const PARSE_STACK_BYTES: usize = 16 << 20;

/// The deepest expression tree: evaluating and dropping one recurse through it.
const MAX_TREE_DEPTH: usize = 64;

/// The variables a filter reads.
const VARIABLES: [&str; 2] = ["body", "event_type"];
/// Type names CEL lets an expression mention (`type(x) == string`).
const TYPE_NAMES: [&str; 11] = [
    "bool",
    "bytes",
    "double",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
    "dyn",
];

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Why a filter is refused: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// 1-based line of the error, when it has a place.
    pub line: Option<u32>,
    /// 1-based column (in characters), when it has a place.
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FilterError {}

/// A parsed, checked filter.
#[derive(Clone)]
pub struct Filter {
    source: String,
    expression: Arc<IdedExpr>,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter({:?})", self.source)
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Filter {}

impl Filter {
    /// Parses `source` and checks it against the rules that bound its cost.
    pub fn parse(source: &str) -> Result<Self, FilterError> {
        if source.trim().is_empty() {
            return Err(FilterError {
                line: None,
                column: None,
                message: "a filter is a CEL expression, not empty text".into(),
            });
        }
        if source.len() > MAX_FILTER_BYTES {
            return Err(FilterError {
                line: None,
                column: None,
                message: format!(
                    "a filter has at most {MAX_FILTER_BYTES} bytes, not {}",
                    source.len()
                ),
            });
        }
        check_nesting(source)?;
        // The parser recurses through several grammar rules per level of nesting, with
        // frames far larger in an unoptimised build: it runs on a thread of its own with
        // room to spare, so that no filter can overflow a worker's stack.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("filter-parse".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || Self::parse_checked(source))
                .map_err(|e| FilterError {
                    line: None,
                    column: None,
                    message: format!("the filter could not be parsed: {e}"),
                })?
                .join()
                .unwrap_or_else(|_| {
                    Err(FilterError {
                        line: None,
                        column: None,
                        message: "the filter could not be parsed".into(),
                    })
                })
        })
    }

    fn parse_checked(source: &str) -> Result<Self, FilterError> {
        let (expression, source_info) = ENV
            .parser()
            .max_recursion_depth(MAX_FILTER_DEPTH)
            .parse_with_source_info(source)
            .map_err(|errors| {
                let first = errors.errors.first();
                let (line, column) = first
                    .map(|e| (e.pos.0, e.pos.1 + 1))
                    .filter(|(l, c)| *l > 0 && *c > 0)
                    .map_or((None, None), |(l, c)| {
                        (u32::try_from(l).ok(), u32::try_from(c).ok())
                    });
                FilterError {
                    line,
                    column,
                    message: first.map_or_else(|| "not a CEL expression".into(), |e| e.msg.clone()),
                }
            })?;
        let checker = Checker {
            source,
            offsets: &source_info,
        };
        checker.check(&expression, &mut Vec::new(), false, 0)?;
        Ok(Self {
            source: source.to_owned(),
            expression: Arc::new(expression),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the event passes: `Err` when the expression fails on this body (a missing
    /// key, a type mismatch) or is not a boolean.
    pub fn matches(&self, input: &FilterInput<'_>) -> Result<bool, String> {
        let body = input.decoded()?;
        let mut context = Context::with_env(ENV.clone());
        context.add_variable_from_value("body", body.clone());
        context.add_variable_from_value("event_type", input.event_type);
        match Value::resolve(&self.expression, &context) {
            Ok(Value::Bool(pass)) => Ok(pass),
            Ok(other) => Err(format!(
                "the filter gave {}, not a boolean",
                other.type_of()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Refuses a source nested deeper than [`MAX_FILTER_DEPTH`] before it reaches the parser,
/// which recurses through several grammar rules per level: the parser's own depth limit
/// applies only after that recursion, and a stack overflow aborts the process. Brackets
/// and conditionals (`a ? b : c`) nest; brackets inside string literals do not count.
fn check_nesting(source: &str) -> Result<(), FilterError> {
    let too_deep = |line: usize, column: usize| FilterError {
        line: u32::try_from(line).ok(),
        column: u32::try_from(column).ok(),
        message: format!("a filter nests at most {MAX_FILTER_DEPTH} levels deep"),
    };
    let (mut depth, mut conditionals) = (0usize, 0usize);
    let (mut line, mut column) = (1, 0);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        column += 1;
        if c == '\n' {
            (line, column) = (line + 1, 0);
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '?' => conditionals += 1,
            _ => {}
        }
        if depth + conditionals > usize::from(MAX_FILTER_DEPTH) {
            return Err(too_deep(line, column));
        }
    }
    Ok(())
}

/// One event as filters read it: its body is decoded once, by the first filter that
/// needs it, however many webhooks share the event.
#[derive(Debug)]
pub struct FilterInput<'a> {
    event_type: &'a str,
    body: &'a [u8],
    decoded: OnceLock<Result<Value, String>>,
}

impl<'a> FilterInput<'a> {
    /// The event of `event_type` with its raw `body`.
    pub fn new(event_type: &'a str, body: &'a [u8]) -> Self {
        Self {
            event_type,
            body,
            decoded: OnceLock::new(),
        }
    }

    fn decoded(&self) -> Result<&Value, String> {
        self.decoded
            .get_or_init(|| {
                let json: serde_json::Value = serde_json::from_slice(self.body)
                    .map_err(|e| format!("the body is not JSON: {e}"))?;
                cel::to_value(json).map_err(|e| format!("the body cannot be read: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Walks a parsed expression for the rules a filter keeps.
struct Checker<'a> {
    source: &'a str,
    offsets: &'a cel::common::ast::SourceInfo,
}

impl Checker<'_> {
    fn error(&self, id: u64, message: String) -> FilterError {
        let (line, column) = self
            .offsets
            .offset_for(id)
            .and_then(|(start, _)| {
                // Offsets count characters; the line and column are of the source text.
                let before: String = self.source.chars().take(start as usize).collect();
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                Some((u32::try_from(line).ok()?, u32::try_from(column).ok()?))
            })
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        FilterError {
            line,
            column,
            message,
        }
    }

    /// `locals`: the comprehension variables in scope; `in_loop`: inside a
    /// comprehension's predicate; `depth`: of `e` in the tree, which evaluating and
    /// dropping it recurse through.
    fn check(
        &self,
        e: &IdedExpr,
        locals: &mut Vec<String>,
        in_loop: bool,
        depth: usize,
    ) -> Result<(), FilterError> {
        if depth > MAX_TREE_DEPTH {
            return Err(self.error(
                e.id,
                format!("a filter's expression is at most {MAX_TREE_DEPTH} operations deep (a chain of `.field` or `||` counts one per link)"),
            ));
        }
        let depth = depth + 1;
        match &e.expr {
            Expr::Ident(name) => {
                if locals.iter().any(|l| l == name) || TYPE_NAMES.contains(&name.as_str()) {
                    return Ok(());
                }
                if !VARIABLES.contains(&name.as_str()) {
                    return Err(self.error(
                        e.id,
                        format!(
                            "unknown variable `{name}`: a filter reads `body` and `event_type`"
                        ),
                    ));
                }
                if in_loop {
                    return Err(self.error(
                        e.id,
                        format!(
                            "`{name}` inside a comprehension's predicate: read only its element there, so that a filter's cost stays linear in the body"
                        ),
                    ));
                }
                Ok(())
            }
            Expr::Comprehension(c) => {
                if in_loop {
                    return Err(self.error(
                        e.id,
                        "a comprehension (all, exists, exists_one, map, filter) inside another: a filter's cost must stay linear in the body".into(),
                    ));
                }
                self.check(&c.iter_range, locals, in_loop, depth)?;
                self.check(&c.accu_init, locals, in_loop, depth)?;
                let scope = locals.len();
                locals.push(c.iter_var.clone());
                locals.extend(c.iter_var2.clone());
                locals.push(c.accu_var.clone());
                let inside = self
                    .check(&c.loop_cond, locals, true, depth)
                    .and_then(|()| self.check(&c.loop_step, locals, true, depth))
                    .and_then(|()| self.check(&c.result, locals, true, depth));
                locals.truncate(scope);
                inside
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.check(target, locals, in_loop, depth)?;
                }
                call.args
                    .iter()
                    .try_for_each(|a| self.check(a, locals, in_loop, depth))
            }
            Expr::Select(select) => self.check(&select.operand, locals, in_loop, depth),
            Expr::List(list) => list
                .elements
                .iter()
                .try_for_each(|a| self.check(a, locals, in_loop, depth)),
            Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
                EntryExpr::MapEntry(m) => {
                    self.check(&m.key, locals, in_loop, depth)?;
                    self.check(&m.value, locals, in_loop, depth)
                }
                EntryExpr::StructField(f) => self.check(&f.value, locals, in_loop, depth),
            }),
            Expr::Struct(s) => Err(self.error(
                e.id,
                format!("message `{}` is not known to filters", s.type_name),
            )),
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
