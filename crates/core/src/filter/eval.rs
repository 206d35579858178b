//! Evaluates a checked filter, counting steps and allocated bytes against a budget.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::cost::{Cost, regex_factor};
use super::program::{Binary, Loop, LoopKind, Node};
use super::value::{
    Key, TypeName, VALUE_BYTES, Value, content_work, key_len, list_bytes, map_bytes,
};

/// Why an evaluation gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// The evaluation reached its budget of steps or bytes and was stopped.
    pub budget_exceeded: bool,
    message: String,
}

impl EvalError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self {
            budget_exceeded: false,
            message: message.into(),
        }
    }

    pub(super) fn not_bool(got: TypeName) -> Self {
        Self::new(format!("the filter gave {got}, not a boolean"))
    }

    pub(super) fn body(message: String) -> Self {
        Self::new(message)
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

pub(super) type Result<T> = std::result::Result<T, EvalError>;

pub(super) fn no_overload(operator: &str, values: &[&Value]) -> EvalError {
    let types: Vec<String> = values.iter().map(|v| v.type_name().to_string()).collect();
    EvalError::new(format!(
        "no such overload: {operator}({})",
        types.join(", ")
    ))
}

/// Short enough for a log line: a key may come from the body.
pub(super) fn shown(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// One evaluation: its inputs, the comprehension element in scope, and what it used.
pub(super) struct Evaluator<'a> {
    body: &'a Value,
    event_type: &'a Value,
    element: Option<Value>,
    budget: Cost,
    pub(super) used: Cost,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(body: &'a Value, event_type: &'a Value, budget: Cost) -> Self {
        Self {
            body,
            event_type,
            element: None,
            budget,
            used: Cost { steps: 0, bytes: 0 },
        }
    }

    pub(super) fn step(&mut self, steps: u64) -> Result<()> {
        self.used.steps = self.used.steps.saturating_add(steps);
        if self.used.steps > self.budget.steps {
            return Err(EvalError {
                budget_exceeded: true,
                message: format!(
                    "the filter was stopped at its budget of {} steps",
                    self.budget.steps
                ),
            });
        }
        Ok(())
    }

    pub(super) fn alloc(&mut self, bytes: u64) -> Result<()> {
        self.used.bytes = self.used.bytes.saturating_add(bytes);
        if self.used.bytes > self.budget.bytes {
            return Err(EvalError {
                budget_exceeded: true,
                message: format!(
                    "the filter was stopped at its budget of {} bytes",
                    self.budget.bytes
                ),
            });
        }
        Ok(())
    }

    /// A map lookup: a comparison of the key per level of the map's tree.
    fn lookup(&mut self, entries: usize, key_bytes: usize) -> Result<()> {
        let levels = u64::from(usize::BITS - entries.leading_zeros()) + 1;
        self.step(levels.saturating_mul(1 + content_work(key_bytes)))
    }

    fn boolean(&mut self, node: &Node) -> Result<bool> {
        match self.eval(node)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::new(format!(
                "Unexpected type: got '{}', want 'bool'",
                other.type_name()
            ))),
        }
    }

    pub(super) fn eval(&mut self, node: &Node) -> Result<Value> {
        self.step(1)?;
        match node {
            Node::Literal(value) => Ok(value.clone()),
            Node::Body => Ok(self.body.clone()),
            Node::EventType => Ok(self.event_type.clone()),
            Node::Element => self
                .element
                .clone()
                .ok_or_else(|| EvalError::new("no comprehension element in scope")),
            Node::Select {
                operand,
                field,
                test,
            } => {
                let operand = self.eval(operand)?;
                self.index(&operand, field, Some(*test))
            }
            Node::Index(container, key) => {
                let container = self.eval(container)?;
                let key = self.eval(key)?;
                self.index(&container, &key, None)
            }
            Node::List(elements) => {
                self.alloc(list_bytes(elements.len() as u64))?;
                let items = elements
                    .iter()
                    .map(|e| self.eval(e))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Value::List(Arc::new(items)))
            }
            Node::Map(entries) => {
                self.alloc(map_bytes(entries.len() as u64))?;
                let mut map = BTreeMap::new();
                for (key, value) in entries {
                    let key = self.eval(key)?;
                    let key = Key::of(&key).ok_or_else(|| {
                        EvalError::new(format!("a map key cannot be a {}", key.type_name()))
                    })?;
                    let value = self.eval(value)?;
                    self.lookup(map.len(), key_len(&key))?;
                    map.insert(key, value);
                }
                Ok(Value::Map(Arc::new(map)))
            }
            Node::Not(a) => match self.eval(a)? {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                other => Err(no_overload("!_", &[&other])),
            },
            Node::Negate(a) => match self.eval(a)? {
                Value::Int(i) => i
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| EvalError::new("Overflow from unary operator '-'")),
                Value::Double(d) => Ok(Value::Double(-d)),
                other => Err(no_overload("-_", &[&other])),
            },
            Node::And(a, b) => self.logical(a, b, false),
            Node::Or(a, b) => self.logical(a, b, true),
            Node::Conditional(condition, yes, no) => {
                if self.boolean(condition)? {
                    self.eval(yes)
                } else {
                    self.eval(no)
                }
            }
            Node::Binary(op, a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.binary(*op, &a, &b)
            }
            Node::Call(function, a) => {
                let a = self.eval(a)?;
                self.call(*function, a)
            }
            Node::Matches(text, regex) => match self.eval(text)? {
                Value::String(s) => {
                    let factor = regex_factor(regex.as_str()) as u64;
                    self.step(content_work(s.len()).saturating_mul(factor))?;
                    Ok(Value::Bool(regex.is_match(&s)))
                }
                other => Err(no_overload("matches", &[&other])),
            },
            Node::Loop(l) => self.comprehension(l),
        }
    }

    /// `a && b` (`absorbing` false) or `a || b` (true): the absorbing value on either
    /// side decides, even when the other side fails; a budget stop is never absorbed.
    fn logical(&mut self, a: &Node, b: &Node, absorbing: bool) -> Result<Value> {
        let left = self.boolean(a);
        match &left {
            Ok(l) if *l == absorbing => return Ok(Value::Bool(absorbing)),
            Err(e) if e.budget_exceeded => return Err(e.clone()),
            _ => {}
        }
        let right = self.eval(b)?;
        let operator = if absorbing { "_||_" } else { "_&&_" };
        match (left, right) {
            (Ok(_), Value::Bool(r)) => Ok(Value::Bool(r)),
            (Err(_), Value::Bool(r)) if r == absorbing => Ok(Value::Bool(r)),
            (Err(e), _) => Err(e),
            (Ok(_), other) => Err(no_overload(operator, &[&Value::Bool(true), &other])),
        }
    }

    /// `container[key]`, or `container.key` (`test` given: `has(container.key)` when true).
    fn index(&mut self, container: &Value, key: &Value, test: Option<bool>) -> Result<Value> {
        match (container, key) {
            (Value::Map(map), key) => {
                let found = match Key::of(key) {
                    Some(k) => {
                        self.lookup(map.len(), key_len(&k))?;
                        map.get(&k)
                    }
                    None => None,
                };
                match (found, test) {
                    (found, Some(true)) => Ok(Value::Bool(found.is_some())),
                    (Some(value), _) => Ok(value.clone()),
                    (None, _) => Err(EvalError::new(format!(
                        "No such key: {}",
                        Key::of(key)
                            .map_or_else(|| key.type_name().to_string(), |k| shown(&k.to_string()))
                    ))),
                }
            }
            (Value::List(items), Value::Int(_) | Value::UInt(_)) if test.is_none() => {
                let i = match key {
                    Value::Int(i) => usize::try_from(*i).ok(),
                    Value::UInt(u) => usize::try_from(*u).ok(),
                    _ => None,
                };
                i.and_then(|i| items.get(i)).cloned().ok_or_else(|| {
                    EvalError::new(format!("Index out of bounds: {}", value_text(key)))
                })
            }
            (other, Value::String(field)) if test.is_some() => Err(EvalError::new(format!(
                "no field `{}` on a value of type {}",
                shown(field),
                other.type_name()
            ))),
            (other, key) => Err(no_overload("_[_]", &[other, key])),
        }
    }

    fn binary(&mut self, op: Binary, a: &Value, b: &Value) -> Result<Value> {
        use Value::{Bytes, Double, Int, List, String, UInt};
        let overflow =
            |name: &str| EvalError::new(format!("Overflow from binary operator '{name}'"));
        let bool = |b: bool| Ok(Value::Bool(b));
        match op {
            Binary::Add => match (a, b) {
                (Int(x), Int(y)) => x.checked_add(*y).map(Int).ok_or_else(|| overflow("add")),
                (UInt(x), UInt(y)) => x.checked_add(*y).map(UInt).ok_or_else(|| overflow("add")),
                (Double(x), Double(y)) => Ok(Double(x + y)),
                (String(x), String(y)) => {
                    self.alloc(2 * VALUE_BYTES + (x.len() + y.len()) as u64)?;
                    self.step(content_work(x.len() + y.len()))?;
                    let mut joined = std::string::String::with_capacity(x.len() + y.len());
                    joined.push_str(x);
                    joined.push_str(y);
                    Ok(Value::string(joined))
                }
                (Bytes(x), Bytes(y)) => {
                    self.alloc(2 * VALUE_BYTES + (x.len() + y.len()) as u64)?;
                    self.step(content_work(x.len() + y.len()))?;
                    Ok(Bytes([&x[..], &y[..]].concat().into()))
                }
                (List(x), List(y)) => {
                    let n = (x.len() + y.len()) as u64;
                    self.alloc(list_bytes(n))?;
                    self.step(n)?;
                    Ok(List(Arc::new(x.iter().chain(y.iter()).cloned().collect())))
                }
                _ => Err(no_overload("_+_", &[a, b])),
            },
            Binary::Subtract | Binary::Multiply | Binary::Divide | Binary::Modulo => {
                Self::arithmetic(op, a, b)
            }
            Binary::Equals | Binary::NotEquals => {
                let equal = a.equals(b, &mut |w| self.step(w))?;
                bool(equal == (op == Binary::Equals))
            }
            Binary::Less | Binary::LessEquals | Binary::Greater | Binary::GreaterEquals => {
                if let (String(x), String(y)) = (a, b) {
                    self.step(content_work(x.len().min(y.len())))?;
                }
                if let (Bytes(x), Bytes(y)) = (a, b) {
                    self.step(content_work(x.len().min(y.len())))?;
                }
                let name = match op {
                    Binary::Less => "_<_",
                    Binary::LessEquals => "_<=_",
                    Binary::Greater => "_>_",
                    _ => "_>=_",
                };
                let order = a.compare(b).ok_or_else(|| no_overload(name, &[a, b]))?;
                bool(match op {
                    Binary::Less => order.is_lt(),
                    Binary::LessEquals => order.is_le(),
                    Binary::Greater => order.is_gt(),
                    _ => order.is_ge(),
                })
            }
            Binary::In => match b {
                List(items) => {
                    for item in items.iter() {
                        if a.equals(item, &mut |w| self.step(w))? {
                            return bool(true);
                        }
                    }
                    bool(false)
                }
                Value::Map(map) => match Key::of(a) {
                    Some(key) => {
                        self.lookup(map.len(), key_len(&key))?;
                        bool(map.contains_key(&key))
                    }
                    None => bool(false),
                },
                _ => Err(no_overload("@in", &[a, b])),
            },
            Binary::Contains | Binary::StartsWith | Binary::EndsWith => {
                let (String(x), String(y)) = (a, b) else {
                    let name = match op {
                        Binary::Contains => "contains",
                        Binary::StartsWith => "startsWith",
                        _ => "endsWith",
                    };
                    return Err(no_overload(name, &[a, b]));
                };
                self.step(content_work(x.len() + y.len()))?;
                bool(match op {
                    Binary::Contains => x.contains(&**y),
                    Binary::StartsWith => x.starts_with(&**y),
                    _ => x.ends_with(&**y),
                })
            }
        }
    }

    fn comprehension(&mut self, l: &Loop) -> Result<Value> {
        let range = self.eval(&l.range)?;
        let elements: Box<dyn Iterator<Item = Value> + '_> = match &range {
            Value::List(items) => Box::new(items.iter().cloned()),
            Value::Map(map) => Box::new(map.keys().map(Key::to_value)),
            other => {
                return Err(EvalError::new(format!(
                    "Unexpected type: got '{}', want 'iterable'",
                    other.type_name()
                )));
            }
        };
        let count = match &range {
            Value::List(items) => items.len(),
            Value::Map(map) => map.len(),
            _ => 0,
        };
        let outer = self.element.take();
        let result = self.iterate(l, elements, count);
        self.element = outer;
        result
    }

    fn iterate(
        &mut self,
        l: &Loop,
        elements: impl Iterator<Item = Value>,
        count: usize,
    ) -> Result<Value> {
        let predicate = |this: &mut Self| match &l.predicate {
            Some(p) => this.boolean(p),
            None => Ok(true),
        };
        match l.kind {
            LoopKind::All | LoopKind::Exists => {
                // `all` stops at the first false, `exists` at the first true; an error
                // on an element stands unless a later element decides.
                let deciding = l.kind == LoopKind::Exists;
                let mut pending = None;
                for element in elements {
                    self.step(1)?;
                    self.element = Some(element);
                    match predicate(self) {
                        Ok(b) if b == deciding => return Ok(Value::Bool(deciding)),
                        Ok(_) => {}
                        Err(e) if e.budget_exceeded => return Err(e),
                        Err(e) => pending = Some(e),
                    }
                }
                pending.map_or(Ok(Value::Bool(!deciding)), Err)
            }
            LoopKind::ExistsOne => {
                let mut found = 0u64;
                for element in elements {
                    self.step(1)?;
                    self.element = Some(element);
                    if predicate(self)? {
                        found += 1;
                    }
                }
                Ok(Value::Bool(found == 1))
            }
            LoopKind::Map => {
                self.alloc(list_bytes(count as u64))?;
                let mut items = Vec::with_capacity(count);
                for element in elements {
                    self.step(1)?;
                    self.element = Some(element);
                    if !predicate(self)? {
                        continue;
                    }
                    let value = match &l.transform {
                        Some(t) => self.eval(t)?,
                        None => self.element.clone().unwrap_or(Value::Null),
                    };
                    items.push(value);
                }
                Ok(Value::List(Arc::new(items)))
            }
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        other => other.type_name().to_string(),
    }
}
