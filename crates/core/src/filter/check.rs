//! Lowers the CEL parser's tree to a [`Node`] tree, refusing what filters may not do:
//! unknown variables and functions, a comprehension inside another's predicate, `body`
//! or `event_type` read inside a predicate, a `matches` pattern that is not a valid
//! literal, and optional values.

use std::sync::Arc;

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators,
};

use super::error::FilterError;
use super::program::{Binary, Function, Loop, LoopKind, Node};
use super::value::{TypeName, Value};

/// The deepest expression tree: evaluating and dropping one recurse through it.
const MAX_TREE_DEPTH: usize = 64;
/// The largest compiled form of a `matches` pattern.
const MAX_REGEX_BYTES: usize = 64 * 1024;

const FUNCTIONS: &str = "size, contains, startsWith, endsWith, matches, int, uint, double, string, bool, bytes, type and dyn";

/// Walks a parsed expression for the rules a filter keeps.
pub(super) struct Lowering<'a> {
    pub(super) source: &'a str,
    /// What the expression is, in messages: `filter` or `transform`.
    pub(super) noun: &'static str,
    pub(super) offsets: &'a SourceInfo,
}

/// Where lowering is: inside a comprehension's predicate, with its element's name.
#[derive(Clone, Copy)]
struct Scope<'a> {
    element: Option<&'a str>,
    depth: usize,
}

impl Lowering<'_> {
    pub(super) fn error(&self, id: u64, message: String) -> FilterError {
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

    pub(super) fn lower(&self, e: &IdedExpr) -> Result<Node, FilterError> {
        self.node(
            e,
            Scope {
                element: None,
                depth: 0,
            },
        )
    }

    fn boxed(&self, e: &IdedExpr, scope: Scope<'_>) -> Result<Box<Node>, FilterError> {
        self.node(e, scope).map(Box::new)
    }

    fn node(&self, e: &IdedExpr, scope: Scope<'_>) -> Result<Node, FilterError> {
        if scope.depth > MAX_TREE_DEPTH {
            return Err(self.error(
                e.id,
                format!("a {}'s expression is at most {MAX_TREE_DEPTH} operations deep (a chain of `.field` or `||` counts one per link)", self.noun),
            ));
        }
        let scope = Scope {
            depth: scope.depth + 1,
            ..scope
        };
        match &e.expr {
            Expr::Ident(name) => self.ident(e.id, name, scope),
            Expr::Literal(literal) => Ok(Node::Literal(literal_value(literal))),
            Expr::Select(select) => Ok(Node::Select {
                operand: self.boxed(&select.operand, scope)?,
                field: Value::string(select.field.as_str()),
                test: select.test,
            }),
            Expr::List(list) => {
                if !list.optional_indices.is_empty() {
                    return Err(self.optional(e.id));
                }
                let elements = list
                    .elements
                    .iter()
                    .map(|element| self.node(element, scope))
                    .collect::<Result<_, _>>()?;
                Ok(Node::List(elements))
            }
            Expr::Map(map) => {
                let entries = map
                    .entries
                    .iter()
                    .map(|entry| match &entry.expr {
                        EntryExpr::MapEntry(m) if !m.optional => {
                            Ok((self.node(&m.key, scope)?, self.node(&m.value, scope)?))
                        }
                        EntryExpr::MapEntry(_) => Err(self.optional(entry.id)),
                        EntryExpr::StructField(f) => Err(self.error(
                            entry.id,
                            format!(
                                "`{}:` is a message field, not known to {}s",
                                f.field, self.noun
                            ),
                        )),
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Node::Map(entries))
            }
            Expr::Call(call) => self.call(e.id, call, scope),
            Expr::Comprehension(c) => self.comprehension(e.id, c, scope),
            Expr::Struct(s) => Err(self.error(
                e.id,
                format!("message `{}` is not known to {}s", s.type_name, self.noun),
            )),
            Expr::Unspecified => Err(self.error(e.id, "an incomplete expression".into())),
        }
    }

    fn optional(&self, id: u64) -> FilterError {
        self.error(
            id,
            format!("optional values (`?`) are not available in {}s", self.noun),
        )
    }

    fn ident(&self, id: u64, name: &str, scope: Scope<'_>) -> Result<Node, FilterError> {
        if scope.element == Some(name) {
            return Ok(Node::Element);
        }
        if let Some(type_name) = TypeName::named(name) {
            return Ok(Node::Literal(Value::Type(type_name)));
        }
        let variable = match name {
            "body" => Node::Body,
            "event_type" => Node::EventType,
            _ => {
                return Err(self.error(
                    id,
                    format!(
                        "unknown variable `{name}`: a {} reads `body` and `event_type`",
                        self.noun
                    ),
                ));
            }
        };
        if scope.element.is_some() {
            return Err(self.error(
                id,
                format!(
                    "`{name}` inside a comprehension's predicate: read only its element there, so that a {}'s cost stays linear in the body",
                    self.noun
                ),
            ));
        }
        Ok(variable)
    }

    fn call(&self, id: u64, call: &CallExpr, scope: Scope<'_>) -> Result<Node, FilterError> {
        let name = call.func_name.as_str();
        let args = &call.args;
        let arg = |i: usize| self.boxed(&args[i], scope);
        if call.target.is_none() {
            let binary = match (name, args.len()) {
                (operators::ADD, 2) => Some(Binary::Add),
                (operators::SUBSTRACT, 2) => Some(Binary::Subtract),
                (operators::MULTIPLY, 2) => Some(Binary::Multiply),
                (operators::DIVIDE, 2) => Some(Binary::Divide),
                (operators::MODULO, 2) => Some(Binary::Modulo),
                (operators::EQUALS, 2) => Some(Binary::Equals),
                (operators::NOT_EQUALS, 2) => Some(Binary::NotEquals),
                (operators::LESS, 2) => Some(Binary::Less),
                (operators::LESS_EQUALS, 2) => Some(Binary::LessEquals),
                (operators::GREATER, 2) => Some(Binary::Greater),
                (operators::GREATER_EQUALS, 2) => Some(Binary::GreaterEquals),
                (operators::IN, 2) => Some(Binary::In),
                _ => None,
            };
            if let Some(op) = binary {
                return Ok(Node::Binary(op, arg(0)?, arg(1)?));
            }
            match (name, args.len()) {
                (operators::LOGICAL_AND, 2) => return Ok(Node::And(arg(0)?, arg(1)?)),
                (operators::LOGICAL_OR, 2) => return Ok(Node::Or(arg(0)?, arg(1)?)),
                (operators::LOGICAL_NOT, 1) => return Ok(Node::Not(arg(0)?)),
                (operators::NEGATE, 1) => return Ok(Node::Negate(arg(0)?)),
                (operators::CONDITIONAL, 3) => {
                    return Ok(Node::Conditional(arg(0)?, arg(1)?, arg(2)?));
                }
                (operators::INDEX, 2) => return Ok(Node::Index(arg(0)?, arg(1)?)),
                (operators::OPT_INDEX | operators::OPT_SELECT, _) => {
                    return Err(self.optional(id));
                }
                ("matches", 2) => return self.matches(arg(0)?, &args[1]),
                _ => {}
            }
            if let (Some(function), 1) = (Function::named(name), args.len()) {
                return Ok(Node::Call(function, arg(0)?));
            }
        } else if let Some(target) = &call.target {
            let receiver = || self.boxed(target, scope);
            let method = match (name, args.len()) {
                ("contains", 1) => Some(Binary::Contains),
                ("startsWith", 1) => Some(Binary::StartsWith),
                ("endsWith", 1) => Some(Binary::EndsWith),
                _ => None,
            };
            if let Some(op) = method {
                return Ok(Node::Binary(op, receiver()?, arg(0)?));
            }
            match (name, args.len()) {
                ("size", 0) => return Ok(Node::Call(Function::Size, receiver()?)),
                ("matches", 1) => return self.matches(receiver()?, &args[0]),
                _ => {}
            }
        }
        let style = if call.target.is_some() {
            "method"
        } else {
            "function"
        };
        Err(self.error(
            id,
            format!(
                "no {style} `{name}` of {} argument(s) in {}s: they call {FUNCTIONS}",
                args.len(),
                self.noun
            ),
        ))
    }

    /// `matches` with a literal pattern, compiled now: a pattern computed from the event
    /// would be compiled on every evaluation.
    fn matches(&self, text: Box<Node>, pattern: &IdedExpr) -> Result<Node, FilterError> {
        let Expr::Literal(LiteralValue::String(literal)) = &pattern.expr else {
            return Err(self.error(
                pattern.id,
                "the pattern of `matches` must be a string literal".into(),
            ));
        };
        let regex = regex::RegexBuilder::new(literal.inner())
            .size_limit(MAX_REGEX_BYTES)
            .build()
            .map_err(|e| {
                let reason = e.to_string();
                let reason = reason.lines().last().unwrap_or_default().trim();
                self.error(
                    pattern.id,
                    format!("the pattern of `matches` is not a valid regular expression: {reason}"),
                )
            })?;
        Ok(Node::Matches(text, Arc::new(regex)))
    }

    fn comprehension(
        &self,
        id: u64,
        c: &ComprehensionExpr,
        scope: Scope<'_>,
    ) -> Result<Node, FilterError> {
        if scope.element.is_some() {
            return Err(self.error(
                id,
                format!("a comprehension (all, exists, exists_one, map, filter) inside another: a {}'s cost must stay linear in the body", self.noun),
            ));
        }
        let range = self.node(&c.iter_range, scope)?;
        let inner = Scope {
            element: Some(c.iter_var.as_str()),
            ..scope
        };
        let unknown = || self.error(id, format!("a comprehension {}s do not know", self.noun));
        if c.iter_var2.is_some() {
            return Err(unknown());
        }
        let accu = c.accu_var.as_str();
        let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if n == accu);
        let call = |e: &'_ IdedExpr, op: &str, n: usize| -> Option<Vec<IdedExpr>> {
            match &e.expr {
                Expr::Call(call)
                    if call.target.is_none() && call.func_name == op && call.args.len() == n =>
                {
                    Some(call.args.clone())
                }
                _ => None,
            }
        };
        // `@result + [transform]`: the step of `map` and `filter`.
        let append = |e: &IdedExpr| -> Option<IdedExpr> {
            let args = call(e, operators::ADD, 2)?;
            match &args[1].expr {
                Expr::List(list) if is_accu(&args[0]) && list.elements.len() == 1 => {
                    Some(list.elements[0].clone())
                }
                _ => None,
            }
        };
        let init = &c.accu_init.expr;
        let step = &c.loop_step;
        let (kind, predicate, transform) = if let Some(args) =
            call(step, operators::LOGICAL_AND, 2).filter(|a| is_accu(&a[0]))
        {
            (LoopKind::All, Some(args[1].clone()), None)
        } else if let Some(args) = call(step, operators::LOGICAL_OR, 2).filter(|a| is_accu(&a[0])) {
            (LoopKind::Exists, Some(args[1].clone()), None)
        } else if let Some(transform) = append(step) {
            (LoopKind::Map, None, Some(transform))
        } else if let Some(args) = call(step, operators::CONDITIONAL, 3).filter(|a| is_accu(&a[2]))
        {
            if let Some(transform) = append(&args[1]) {
                (LoopKind::Map, Some(args[0].clone()), Some(transform))
            } else if call(&args[1], operators::ADD, 2).is_some_and(|a| is_accu(&a[0]))
                && matches!(init, Expr::Literal(LiteralValue::Int(_)))
            {
                (LoopKind::ExistsOne, Some(args[0].clone()), None)
            } else {
                return Err(unknown());
            }
        } else {
            return Err(unknown());
        };
        let expected_init = match kind {
            LoopKind::All => matches!(init, Expr::Literal(LiteralValue::Boolean(b)) if *b.inner()),
            LoopKind::Exists => {
                matches!(init, Expr::Literal(LiteralValue::Boolean(b)) if !*b.inner())
            }
            LoopKind::ExistsOne => true,
            LoopKind::Map => matches!(init, Expr::List(l) if l.elements.is_empty()),
        };
        if !expected_init {
            return Err(unknown());
        }
        let predicate = predicate.map(|p| self.node(&p, inner)).transpose()?;
        let transform = transform.map(|t| self.node(&t, inner)).transpose()?;
        Ok(Node::Loop(Box::new(Loop {
            kind,
            range,
            predicate,
            transform,
        })))
    }
}

fn literal_value(literal: &LiteralValue) -> Value {
    match literal {
        LiteralValue::Boolean(b) => Value::Bool(*b.inner()),
        LiteralValue::Bytes(b) => Value::Bytes(b.inner().into()),
        LiteralValue::Double(d) => Value::Double(*d.inner()),
        LiteralValue::Int(i) => Value::Int(*i.inner()),
        LiteralValue::Null => Value::Null,
        LiteralValue::String(s) => Value::string(s.inner()),
        LiteralValue::UInt(u) => Value::UInt(*u.inner()),
    }
}
