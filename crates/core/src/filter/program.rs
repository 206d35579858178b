//! A checked filter as hookwire evaluates it: the CEL parser's tree lowered to the
//! operations filters may use, each comprehension recognised as the macro it came from.

use std::sync::Arc;

use super::value::Value;

/// One operation of a checked expression.
#[derive(Debug)]
pub(super) enum Node {
    Literal(Value),
    Body,
    EventType,
    /// The element of the comprehension being evaluated: comprehensions do not nest, so
    /// there is at most one.
    Element,
    Select {
        operand: Box<Node>,
        field: Value,
        /// `has(operand.field)`.
        test: bool,
    },
    Index(Box<Node>, Box<Node>),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Not(Box<Node>),
    Negate(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Conditional(Box<Node>, Box<Node>, Box<Node>),
    Binary(Binary, Box<Node>, Box<Node>),
    Call(Function, Box<Node>),
    /// `text.matches(pattern)`, the pattern a literal compiled once, at parse.
    Matches(Box<Node>, Arc<regex::Regex>),
    Loop(Box<Loop>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Binary {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
    Equals,
    NotEquals,
    Less,
    LessEquals,
    Greater,
    GreaterEquals,
    In,
    Contains,
    StartsWith,
    EndsWith,
}

/// A function of one argument (a method's receiver is its argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Function {
    Size,
    ToInt,
    ToUInt,
    ToDouble,
    ToString,
    ToBool,
    ToBytes,
    TypeOf,
    Dyn,
}

impl Function {
    pub(super) fn named(name: &str) -> Option<Self> {
        Some(match name {
            "size" => Self::Size,
            "int" => Self::ToInt,
            "uint" => Self::ToUInt,
            "double" => Self::ToDouble,
            "string" => Self::ToString,
            "bool" => Self::ToBool,
            "bytes" => Self::ToBytes,
            "type" => Self::TypeOf,
            "dyn" => Self::Dyn,
            _ => return None,
        })
    }
}

/// A comprehension: one of CEL's macros over a list's elements or a map's keys.
#[derive(Debug)]
pub(super) struct Loop {
    pub(super) kind: LoopKind,
    pub(super) range: Node,
    /// The macro's predicate (`map`'s optional filter included), over [`Node::Element`].
    pub(super) predicate: Option<Node>,
    /// `map`'s transform, over [`Node::Element`].
    pub(super) transform: Option<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoopKind {
    All,
    Exists,
    ExistsOne,
    /// `map` (with its optional filter) and `filter` (which keeps the element itself).
    Map,
}
