//! Payload filters: a webhook may carry a CEL expression over the event's JSON body; a
//! delivery is attempted only when it is true.
//!
//! The language is the Common Expression Language: the `cel` crate parses it, and
//! hookwire lowers the parsed tree to the operations filters may use ([`check`]) and
//! evaluates it itself ([`eval`]), because every evaluation must be bounded. A filter
//! reads two variables: `body`, the decoded event body, and `event_type`. CEL has no
//! loops of its own, only the comprehension macros (`all`, `exists`, `exists_one`, `map`,
//! `filter`). The cost of one evaluation is bounded twice:
//!
//! - at parse, the filter's source has at most [`MAX_FILTER_BYTES`], nests at most
//!   [`MAX_FILTER_DEPTH`] levels, has no comprehension inside another's predicate and
//!   reads only its element there; a `matches` pattern is a literal, compiled once; and
//!   the static check ([`cost`]) bounds the steps and bytes of an evaluation on a body of
//!   at most [`MAX_BODY_BYTES`], refusing a filter whose bound exceeds [`BUDGET`]. A
//!   comprehension's range may be another's result, whose size the check follows: eight
//!   stages that each repeat their element eight times are refused, not run;
//! - at run time the evaluator counts the same steps and bytes and stops at [`BUDGET`]
//!   (a larger body than the check assumed, a stored filter accepted by older rules), an
//!   error like any other failure of the filter on that body.

use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock};

use cel::Env;

mod check;
mod cost;
mod error;
mod eval;
mod functions;
mod program;
mod value;

pub use cost::{BUDGET, Cost, MAX_BODY_BYTES};
pub use error::FilterError;
pub use eval::EvalError;
pub use value::{Key, TypeName, Value};

use eval::Evaluator;
use program::Node;

/// The longest filter accepted.
pub const MAX_FILTER_BYTES: usize = 2048;
/// The deepest nesting of a filter's expression.
pub const MAX_FILTER_DEPTH: u16 = 32;

/// The parser's stack: many times what a filter within the limits needs.
const PARSE_STACK_BYTES: usize = 16 << 20;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A parsed, checked filter.
#[derive(Clone)]
pub struct Filter {
    source: String,
    program: Arc<Program>,
}

/// The lowered expression and the static bound on one evaluation of it.
#[derive(Debug)]
struct Program {
    /// Why a stored filter is refused by the current rules, when it is.
    root: Result<Node, FilterError>,
    cost: Cost,
    /// `filter` or `transform`, for messages.
    noun: &'static str,
}

/// What an expression is for: its name in messages and its longest source.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    pub(crate) noun: &'static str,
    pub(crate) max_bytes: usize,
}

impl Kind {
    const FILTER: Self = Self {
        noun: "filter",
        max_bytes: MAX_FILTER_BYTES,
    };
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

/// One evaluation: its value or why it has none, and the steps and bytes it took.
#[derive(Debug)]
pub struct Evaluation {
    /// The expression's value.
    pub result: Result<Value, EvalError>,
    /// What the evaluation took, as [`BUDGET`] counts it.
    pub used: Cost,
}

impl Filter {
    /// Parses `source` and checks it against the rules that bound its cost.
    pub fn parse(source: &str) -> Result<Self, FilterError> {
        Self::parse_as(source, Kind::FILTER)
    }

    /// Parses `source` as an expression of `kind`: the same language and cost bounds, its
    /// own longest source and its own name in messages.
    pub(crate) fn parse_as(source: &str, kind: Kind) -> Result<Self, FilterError> {
        let noun = kind.noun;
        let plain = |message: String| FilterError {
            line: None,
            column: None,
            message,
        };
        if source.trim().is_empty() {
            return Err(plain(format!(
                "a {noun} is a CEL expression, not empty text"
            )));
        }
        if source.len() > kind.max_bytes {
            return Err(plain(format!(
                "a {noun} has at most {} bytes, not {}",
                kind.max_bytes,
                source.len()
            )));
        }
        check_nesting(source, noun)?;
        // The parser recurses through several grammar rules per level of nesting, with
        // frames far larger in an unoptimised build: it runs on a thread of its own with
        // room to spare, so that no expression can overflow a worker's stack.
        let program = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("filter-parse".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || Self::parse_checked(source, noun))
                .map_err(|e| plain(format!("the {noun} could not be parsed: {e}")))?
                .join()
                .unwrap_or_else(|_| Err(plain(format!("the {noun} could not be parsed"))))
        })?;
        let cost = program.cost;
        if !cost.within(BUDGET) {
            return Err(plain(format!(
                "the {noun} could take up to {} steps and {} bytes on a body of {} KiB, more than the {} steps and {} bytes a {noun} may: a comprehension over another's result multiplies what it reads, and so does `+` inside `map`",
                shown_count(cost.steps),
                shown_count(cost.bytes),
                MAX_BODY_BYTES / 1024,
                shown_count(BUDGET.steps),
                shown_count(BUDGET.bytes),
            )));
        }
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
        })
    }

    fn parse_checked(source: &str, noun: &'static str) -> Result<Program, FilterError> {
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
        let lowering = check::Lowering {
            source,
            noun,
            offsets: &source_info,
        };
        let root = lowering.lower(&expression)?;
        // The parsed tree is dropped here, on this thread's large stack.
        drop(expression);
        let cost = cost::estimate(&root);
        Ok(Program {
            root: Ok(root),
            cost,
            noun,
        })
    }

    /// Loads a filter saved under earlier rules, never failing: one whose static bound
    /// exceeds [`BUDGET`] runs, stopped by the budget when it reaches it; one the current
    /// rules refuse otherwise fails every evaluation with the reason. Either way a failure
    /// costs only that webhook's delivery (`filter_error`), never the reading of its
    /// organization's other webhooks.
    pub fn load(source: &str) -> Self {
        Self::load_as(source, Kind::FILTER)
    }

    /// [`Filter::load`] for an expression of `kind`.
    pub(crate) fn load_as(source: &str, kind: Kind) -> Self {
        if let Ok(filter) = Self::parse_as(source, kind) {
            return filter;
        }
        let noun = kind.noun;
        let refused = move |reason: FilterError| Program {
            root: Err(reason),
            cost: Cost { steps: 0, bytes: 0 },
            noun,
        };
        let program = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("filter-parse".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || {
                    check_nesting(source, noun)
                        .and_then(|()| Self::parse_checked(source, noun))
                        .unwrap_or_else(refused)
                })
                .ok()
                .and_then(|thread| thread.join().ok())
        });
        Self {
            source: source.to_owned(),
            program: Arc::new(program.unwrap_or_else(|| {
                refused(FilterError {
                    line: None,
                    column: None,
                    message: format!("the {noun} could not be parsed"),
                })
            })),
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The most one evaluation can take on a body of at most [`MAX_BODY_BYTES`], as the
    /// static check bounds it: never more than [`BUDGET`] for a parsed filter.
    pub fn cost(&self) -> Cost {
        self.program.cost
    }

    /// Whether the event passes: `Err` when the expression fails on this body (a missing
    /// key, a type mismatch), is not a boolean, or reached its budget.
    pub fn matches(&self, input: &FilterInput<'_>) -> Result<bool, EvalError> {
        match self.evaluate(input).result? {
            Value::Bool(pass) => Ok(pass),
            other => Err(EvalError::not_bool(other.type_name())),
        }
    }

    /// Evaluates the expression on `input` within [`BUDGET`], with what it took.
    pub fn evaluate(&self, input: &FilterInput<'_>) -> Evaluation {
        self.evaluate_within(input, BUDGET)
    }

    /// Evaluates the expression on `input` within `budget`.
    pub fn evaluate_within(&self, input: &FilterInput<'_>, budget: Cost) -> Evaluation {
        let body = match input.decoded() {
            Ok(body) => body,
            Err(message) => {
                return Evaluation {
                    result: Err(EvalError::body(message)),
                    used: Cost { steps: 0, bytes: 0 },
                };
            }
        };
        let root = match &self.program.root {
            Ok(root) => root,
            Err(refused) => {
                return Evaluation {
                    result: Err(EvalError::body(format!(
                        "the stored {} is refused by the current rules ({refused}): update or remove it",
                        self.program.noun
                    ))),
                    used: Cost { steps: 0, bytes: 0 },
                };
            }
        };
        let event_type = Value::string(input.event_type);
        let mut evaluator = Evaluator::new(body, &event_type, budget);
        let result = evaluator.eval(root);
        Evaluation {
            result,
            used: evaluator.used,
        }
    }
}

/// A count for a message: `2,000,000`.
fn shown_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Refuses a source nested deeper than [`MAX_FILTER_DEPTH`] before it reaches the parser,
/// which recurses through several grammar rules per level: the parser's own depth limit
/// applies only after that recursion, and a stack overflow aborts the process. Brackets
/// and conditionals (`a ? b : c`) nest; brackets inside string literals do not count.
fn check_nesting(source: &str, noun: &str) -> Result<(), FilterError> {
    let too_deep = |line: usize, column: usize| FilterError {
        line: u32::try_from(line).ok(),
        column: u32::try_from(column).ok(),
        message: format!("a {noun} nests at most {MAX_FILTER_DEPTH} levels deep"),
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
                serde_json::from_slice::<Value>(self.body)
                    .map_err(|e| format!("the body is not JSON: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests;
