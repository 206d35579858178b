//! The static cost check: an upper bound on the steps and bytes one evaluation of a
//! checked filter can take, on any body of at most [`MAX_BODY_BYTES`].
//!
//! Every value is measured as the evaluator accounts it: [`VALUE_BYTES`] per value
//! (scalar, element, key) plus the bytes of its strings. A JSON text of `n` bytes holds
//! at most `(n + 1) / 2` values (each value but the outermost takes a byte of its own and
//! one of punctuation) and at most `n` bytes of strings, so the body measures at most
//! `17 n + 16`. Outside comprehensions each expression's size, steps and bytes are
//! bounded by numbers; inside a predicate they are bounded by `a + b |x|`, affine in the
//! size of the element `x`, since a predicate reads only its element and nests no
//! comprehension. Summed over the elements of a range of size `R` with at most
//! `R / VALUE_BYTES` elements, a predicate costs at most `a R / VALUE_BYTES + b R`: the
//! bound holds when one comprehension iterates over another's result, each stage
//! multiplying what the next one reads by its own factor, which the budget then refuses.

use super::program::{Binary, Function, Loop, LoopKind, Node};
use super::value::{BYTES_PER_STEP, Key, VALUE_BYTES, Value, list_bytes, map_bytes};

/// The body size the static check assumes: `delivery.max_event_bytes`' default.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;
/// The longest event type (`[a-z0-9_]{1,64}`).
const MAX_EVENT_TYPE_BYTES: u64 = 64;

/// Steps of one map lookup per key comparison: a map of the largest body holds at most
/// 2^16 keys, so a lookup compares at most 17.
const LOOKUP_COMPARISONS: f64 = 17.0;

/// What one evaluation may take: the static check refuses a filter whose bound exceeds
/// it, and the evaluator stops one that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Steps: one per operation, plus one per 16 bytes a string operation reads or writes.
    pub steps: u64,
    /// Bytes of the values the evaluation allocates.
    pub bytes: u64,
}

impl Cost {
    /// Whether both are at most `budget`'s.
    pub fn within(self, budget: Self) -> bool {
        self.steps <= budget.steps && self.bytes <= budget.bytes
    }
}

/// The budget of one evaluation.
pub const BUDGET: Cost = Cost {
    steps: 2_000_000,
    bytes: 16 << 20,
};

/// `fixed + per_element × |x|`, `|x|` the size of the comprehension's element.
#[derive(Debug, Clone, Copy, Default)]
struct Affine {
    fixed: f64,
    per_element: f64,
}

impl Affine {
    fn constant(fixed: f64) -> Self {
        Self {
            fixed,
            per_element: 0.0,
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            fixed: self.fixed + other.fixed,
            per_element: self.per_element + other.per_element,
        }
    }

    fn add(self, constant: f64) -> Self {
        Self {
            fixed: self.fixed + constant,
            ..self
        }
    }

    fn times(self, factor: f64) -> Self {
        Self {
            fixed: self.fixed * factor,
            per_element: self.per_element * factor,
        }
    }

    fn max(self, other: Self) -> Self {
        Self {
            fixed: self.fixed.max(other.fixed),
            per_element: self.per_element.max(other.per_element),
        }
    }

    /// The smaller of two bounds on one quantity: still a bound.
    fn min(self, other: Self) -> Self {
        if (self.per_element, self.fixed) <= (other.per_element, other.fixed) {
            self
        } else {
            other
        }
    }

    /// Summed over the `count` elements of a range of size `range`.
    fn over(self, count: f64, range: f64) -> f64 {
        self.fixed * count + self.per_element * range
    }

    /// The bound where it does not depend on an element: at the top level.
    fn total(self) -> f64 {
        self.fixed + self.per_element
    }
}

/// Bounds on one expression: the size of its value, how many elements or keys it has
/// when that is known more closely than its size tells, and the steps and bytes it takes.
#[derive(Debug, Clone, Copy, Default)]
struct Estimate {
    size: Affine,
    count: Option<Affine>,
    steps: Affine,
    bytes: Affine,
}

impl Estimate {
    fn scalar() -> Self {
        Self {
            size: Affine::constant(VALUE_BYTES as f64),
            count: None,
            steps: Affine::constant(1.0),
            bytes: Affine::default(),
        }
    }

    /// This operation's own step after its operands'.
    fn after(operands: &[Self]) -> Self {
        operands.iter().fold(Self::scalar(), |sum, e| Self {
            steps: sum.steps.plus(e.steps),
            bytes: sum.bytes.plus(e.bytes),
            ..sum
        })
    }

    /// At most one element per [`VALUE_BYTES`] of its size.
    fn count(&self) -> Affine {
        let by_size = self.size.times(1.0 / VALUE_BYTES as f64);
        self.count.map_or(by_size, |c| c.min(by_size))
    }
}

/// Work of touching strings of `size` bytes.
fn content(size: Affine) -> Affine {
    size.times(1.0 / BYTES_PER_STEP as f64)
}

/// Steps of a map lookup with a key of `size`, in any map.
fn lookup(size: Affine) -> Affine {
    content(size).add(1.0).times(LOOKUP_COMPARISONS)
}

/// Steps of a lookup of a literal key of `key_size` in a map of `map_size`: a key
/// comparison per level of the map's tree. A map of `n` entries measures at least `64 n`,
/// and has `bits(n) + 1 <= 2 + n / 2` levels.
fn literal_lookup(key_size: f64, map_size: Affine) -> Affine {
    let levels = if map_size.per_element == 0.0 {
        Affine::constant(
            ((map_size.fixed / 64.0).max(1.0).log2().floor() + 2.0).min(LOOKUP_COMPARISONS),
        )
    } else {
        map_size.times(1.0 / 128.0).add(2.0)
    };
    levels.times(1.0 + (key_size / BYTES_PER_STEP as f64).ceil())
}

/// The most one evaluation of `node` can take on a body of at most [`MAX_BODY_BYTES`].
pub(super) fn estimate(node: &Node) -> Cost {
    let e = node_estimate(node);
    // At the top level nothing depends on an element.
    let round = |a: Affine| {
        let total = a.fixed + a.per_element;
        if total >= u64::MAX as f64 {
            u64::MAX
        } else {
            total.ceil() as u64
        }
    };
    Cost {
        steps: round(e.steps),
        bytes: round(e.bytes),
    }
}

/// At most one value per two bytes of JSON text.
fn body_values(body_bytes: u64) -> f64 {
    (body_bytes as f64 + 1.0) / 2.0
}

pub(super) fn body_size(body_bytes: u64) -> f64 {
    (VALUE_BYTES / 2 + 1) as f64 * body_bytes as f64 + (VALUE_BYTES / 2) as f64
}

/// The size of a literal, as the evaluator measures values.
pub(super) fn literal_size(value: &Value) -> f64 {
    let v = VALUE_BYTES as f64;
    match value {
        Value::String(s) => v + s.len() as f64,
        Value::Bytes(b) => v + b.len() as f64,
        Value::List(items) => v + items.iter().map(literal_size).sum::<f64>(),
        Value::Map(entries) => {
            v + entries
                .iter()
                .map(|(k, x)| literal_size(&Key::to_value(k)) + literal_size(x))
                .sum::<f64>()
        }
        _ => v,
    }
}

fn node_estimate(node: &Node) -> Estimate {
    let v = VALUE_BYTES as f64;
    match node {
        Node::Literal(value) => Estimate {
            size: Affine::constant(literal_size(value)),
            ..Estimate::scalar()
        },
        Node::Body => Estimate {
            size: Affine::constant(body_size(MAX_BODY_BYTES)),
            count: Some(Affine::constant(body_values(MAX_BODY_BYTES))),
            ..Estimate::scalar()
        },
        Node::EventType => Estimate {
            size: Affine::constant(v + MAX_EVENT_TYPE_BYTES as f64),
            ..Estimate::scalar()
        },
        Node::Element => Estimate {
            size: Affine {
                fixed: 0.0,
                per_element: 1.0,
            },
            ..Estimate::scalar()
        },
        Node::Select {
            operand,
            field,
            test,
        } => {
            let operand = node_estimate(operand);
            let mut e = Estimate::after(&[operand]);
            e.steps = e
                .steps
                .plus(literal_lookup(literal_size(field), operand.size));
            if !test {
                e.size = operand.size;
                e.count = operand.count;
            }
            e
        }
        Node::Index(container, key) => {
            let (container, key) = (node_estimate(container), node_estimate(key));
            let mut e = Estimate::after(&[container, key]);
            e.steps = e.steps.plus(lookup(key.size));
            e.size = container.size;
            e.count = container.count;
            e
        }
        Node::List(elements) => {
            let elements: Vec<_> = elements.iter().map(node_estimate).collect();
            let mut e = Estimate::after(&elements);
            e.size = elements
                .iter()
                .fold(Affine::constant(v), |s, x| s.plus(x.size));
            e.count = Some(Affine::constant(elements.len() as f64));
            e.bytes = e.bytes.add(list_bytes(elements.len() as u64) as f64);
            e
        }
        Node::Map(entries) => {
            let parts: Vec<_> = entries
                .iter()
                .flat_map(|(k, x)| [node_estimate(k), node_estimate(x)])
                .collect();
            let mut e = Estimate::after(&parts);
            e.size = parts
                .iter()
                .fold(Affine::constant(v), |s, x| s.plus(x.size));
            e.count = Some(Affine::constant(entries.len() as f64));
            // Each key is looked up among the entries before it.
            let levels = f64::from(usize::BITS - entries.len().leading_zeros()) + 1.0;
            for key in parts.iter().step_by(2) {
                e.steps = e.steps.plus(content(key.size).add(1.0).times(levels));
            }
            e.bytes = e.bytes.add(map_bytes(entries.len() as u64) as f64);
            e
        }
        Node::Not(a) | Node::Negate(a) => Estimate::after(&[node_estimate(a)]),
        Node::And(a, b) | Node::Or(a, b) => Estimate::after(&[node_estimate(a), node_estimate(b)]),
        Node::Conditional(condition, yes, no) => {
            let (yes, no) = (node_estimate(yes), node_estimate(no));
            let mut e = Estimate::after(&[node_estimate(condition), yes, no]);
            e.size = yes.size.max(no.size);
            e.count = Some(yes.count().max(no.count()));
            e
        }
        Node::Binary(op, a, b) => binary(*op, node_estimate(a), node_estimate(b)),
        Node::Call(function, a) => call(*function, node_estimate(a)),
        Node::Matches(text, regex) => {
            let text = node_estimate(text);
            let mut e = Estimate::after(&[text]);
            e.steps = e
                .steps
                .plus(content(text.size).times(regex_factor(regex.as_str())));
            e
        }
        Node::Loop(l) => comprehension(l),
    }
}

/// How many steps a `matches` with this pattern takes per step of its text: the regex
/// engine's worst case grows with the pattern.
pub(super) fn regex_factor(pattern: &str) -> f64 {
    1.0 + (pattern.len() as f64 / 4.0).ceil()
}

fn binary(op: Binary, a: Estimate, b: Estimate) -> Estimate {
    let mut e = Estimate::after(&[a, b]);
    let v = VALUE_BYTES as f64;
    let both = a.size.plus(b.size);
    match op {
        Binary::Add => {
            // Strings, bytes and lists concatenate into a new value: a list of `n`
            // elements measures at least `32 n` and allocates `32 (n + 2)`.
            e.size = both;
            e.count = Some(a.count().plus(b.count()));
            e.steps = e.steps.plus(content(both));
            e.bytes = e.bytes.plus(both).add(2.0 * v);
        }
        Binary::Equals
        | Binary::NotEquals
        | Binary::Less
        | Binary::LessEquals
        | Binary::Greater
        | Binary::GreaterEquals => {
            // A step per pair of values compared and per 16 bytes of the shorter
            // strings: at most one per 8 bytes of the smaller side.
            e.steps = e.steps.plus(content(a.size.min(b.size)).times(2.0));
        }
        Binary::In => {
            // A comparison per element of a list, or a lookup in a map.
            e.steps = e
                .steps
                .plus(content(b.size).times(2.0))
                .plus(lookup(a.size));
        }
        Binary::Contains | Binary::StartsWith | Binary::EndsWith => {
            e.steps = e.steps.plus(content(both).times(2.0));
        }
        Binary::Subtract | Binary::Multiply | Binary::Divide | Binary::Modulo => {}
    }
    e
}

/// Room for the text of any number, `5e-324` written out included.
const NUMBER_TEXT_BYTES: f64 = 400.0;

fn call(function: Function, a: Estimate) -> Estimate {
    let v = VALUE_BYTES as f64;
    let mut e = Estimate::after(&[a]);
    match function {
        Function::Size
        | Function::ToInt
        | Function::ToUInt
        | Function::ToDouble
        | Function::ToBool => {
            e.steps = e.steps.plus(content(a.size));
        }
        Function::ToString | Function::ToBytes => {
            // A string or bytes is copied; a number's text has at most 330 bytes.
            e.size = a.size.add(NUMBER_TEXT_BYTES);
            e.steps = e.steps.plus(content(a.size)).add(1.0);
            e.bytes = e.bytes.plus(a.size).add(NUMBER_TEXT_BYTES + v);
        }
        Function::TypeOf => {}
        Function::Dyn => {
            e.size = a.size;
            e.count = a.count;
        }
    }
    e
}

fn comprehension(l: &Loop) -> Estimate {
    let v = VALUE_BYTES as f64;
    let range = node_estimate(&l.range);
    // A range is outside any predicate: its size is a number.
    let range_size = range.size.total();
    let elements = range.count().total();
    let mut e = Estimate::after(&[range]);
    let per_element = [&l.predicate, &l.transform]
        .into_iter()
        .flatten()
        .map(node_estimate)
        .fold(Estimate::default(), |sum, x| Estimate {
            size: sum.size.plus(x.size),
            count: None,
            steps: sum.steps.plus(x.steps),
            bytes: sum.bytes.plus(x.bytes),
        });
    e.steps = e
        .steps
        .add(elements + per_element.steps.over(elements, range_size));
    e.bytes = e.bytes.add(per_element.bytes.over(elements, range_size));
    if l.kind == LoopKind::Map {
        let transform = l
            .transform
            .as_ref()
            .map_or(Estimate::scalar(), node_estimate);
        e.size = Affine::constant(v + transform.size.over(elements, range_size));
        e.count = Some(Affine::constant(elements));
        e.bytes = e.bytes.add(list_bytes(elements.ceil() as u64) as f64);
    }
    e
}
