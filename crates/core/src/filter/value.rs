//! The values a filter computes with, decoded straight from the event's JSON body.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// What one value costs in the accounting of sizes, besides the bytes of a string: a
/// slot of a list, an entry's key or value, or a value on its own.
pub(super) const VALUE_BYTES: u64 = 32;

/// A CEL value. Composite values share their parts: copying one is a reference count.
#[derive(Clone, Debug)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A signed integer (a JSON number below zero).
    Int(i64),
    /// An unsigned integer (a JSON number of zero or more).
    UInt(u64),
    /// A floating-point number (a JSON number with a fraction or exponent).
    Double(f64),
    /// A string: built in place, so that sharing it copies nothing more.
    String(Arc<String>),
    /// Bytes (from `bytes(…)`).
    Bytes(Arc<[u8]>),
    /// A list.
    List(Arc<Vec<Value>>),
    /// A map (a JSON object).
    Map(Arc<BTreeMap<Key, Value>>),
    /// A type (`type(x) == string`).
    Type(TypeName),
}

/// A map's key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A boolean key.
    Bool(bool),
    /// A signed integer key.
    Int(i64),
    /// An unsigned integer key.
    UInt(u64),
    /// A string key (every key of a JSON object).
    String(Arc<String>),
}

/// The types a filter can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeName {
    #[allow(missing_docs)]
    Bool,
    #[allow(missing_docs)]
    Bytes,
    #[allow(missing_docs)]
    Double,
    #[allow(missing_docs)]
    Dyn,
    #[allow(missing_docs)]
    Int,
    #[allow(missing_docs)]
    List,
    #[allow(missing_docs)]
    Map,
    #[allow(missing_docs)]
    NullType,
    #[allow(missing_docs)]
    String,
    #[allow(missing_docs)]
    Type,
    #[allow(missing_docs)]
    UInt,
}

impl TypeName {
    pub(super) fn named(name: &str) -> Option<Self> {
        Some(match name {
            "bool" => Self::Bool,
            "bytes" => Self::Bytes,
            "double" => Self::Double,
            "dyn" => Self::Dyn,
            "int" => Self::Int,
            "list" => Self::List,
            "map" => Self::Map,
            "null_type" => Self::NullType,
            "string" => Self::String,
            "type" => Self::Type,
            "uint" => Self::UInt,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::Bytes => "bytes",
            Self::Double => "double",
            Self::Dyn => "dyn",
            Self::Int => "int",
            Self::List => "list",
            Self::Map => "map",
            Self::NullType => "null_type",
            Self::String => "string",
            Self::Type => "type",
            Self::UInt => "uint",
        }
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Value {
    /// The value's type.
    pub fn type_name(&self) -> TypeName {
        match self {
            Self::Null => TypeName::NullType,
            Self::Bool(_) => TypeName::Bool,
            Self::Int(_) => TypeName::Int,
            Self::UInt(_) => TypeName::UInt,
            Self::Double(_) => TypeName::Double,
            Self::String(_) => TypeName::String,
            Self::Bytes(_) => TypeName::Bytes,
            Self::List(_) => TypeName::List,
            Self::Map(_) => TypeName::Map,
            Self::Type(_) => TypeName::Type,
        }
    }

    pub(super) fn string(s: impl Into<String>) -> Self {
        Self::String(Arc::new(s.into()))
    }

    /// Numeric values compared across their types, as CEL does: `1 == 1u == 1.0`.
    fn numeric_cmp(&self, other: &Self) -> Option<Option<Ordering>> {
        Some(match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(b)),
            (Self::UInt(a), Self::UInt(b)) => Some(a.cmp(b)),
            (Self::Double(a), Self::Double(b)) => a.partial_cmp(b),
            (Self::Int(a), Self::UInt(b)) => {
                Some(u64::try_from(*a).map_or(Ordering::Less, |a| a.cmp(b)))
            }
            (Self::UInt(a), Self::Int(b)) => {
                Some(u64::try_from(*b).map_or(Ordering::Greater, |b| a.cmp(&b)))
            }
            #[allow(clippy::cast_precision_loss)]
            (Self::Int(a), Self::Double(b)) => (*a as f64).partial_cmp(b),
            #[allow(clippy::cast_precision_loss)]
            (Self::UInt(a), Self::Double(b)) => (*a as f64).partial_cmp(b),
            #[allow(clippy::cast_precision_loss)]
            (Self::Double(a), Self::Int(b)) => a.partial_cmp(&(*b as f64)),
            #[allow(clippy::cast_precision_loss)]
            (Self::Double(a), Self::UInt(b)) => a.partial_cmp(&(*b as f64)),
            _ => return None,
        })
    }

    /// The order of two values, for `<` and its kin: numbers across their types,
    /// strings, bytes and booleans with their own kind. `None`: they do not compare.
    pub(super) fn compare(&self, other: &Self) -> Option<Ordering> {
        if let Some(order) = self.numeric_cmp(other) {
            return order;
        }
        match (self, other) {
            (Self::String(a), Self::String(b)) => Some(a.cmp(b)),
            (Self::Bytes(a), Self::Bytes(b)) => Some(a.cmp(b)),
            (Self::Bool(a), Self::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// CEL equality, `work` called once per pair of values compared and with the bytes
    /// of each pair of strings, so that the caller can count what comparing costs.
    pub(super) fn equals<E>(
        &self,
        other: &Self,
        work: &mut impl FnMut(u64) -> Result<(), E>,
    ) -> Result<bool, E> {
        work(1)?;
        if let Some(order) = self.numeric_cmp(other) {
            return Ok(order == Some(Ordering::Equal));
        }
        Ok(match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::String(a), Self::String(b)) => {
                work(content_work(a.len().min(b.len())))?;
                a == b
            }
            (Self::Bytes(a), Self::Bytes(b)) => {
                work(content_work(a.len().min(b.len())))?;
                a == b
            }
            (Self::Type(a), Self::Type(b)) => a == b,
            (Self::List(a), Self::List(b)) => {
                if a.len() != b.len() {
                    return Ok(false);
                }
                for (x, y) in a.iter().zip(b.iter()) {
                    if !x.equals(y, work)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Self::Map(a), Self::Map(b)) => {
                if a.len() != b.len() {
                    return Ok(false);
                }
                for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
                    work(content_work(key_len(ka)))?;
                    if ka != kb || !va.equals(vb, work)? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => false,
        })
    }
}

/// Bytes a new list of `elements` allocates: its header and a slot per element.
pub(super) fn list_bytes(elements: u64) -> u64 {
    VALUE_BYTES.saturating_mul(elements.saturating_add(2))
}

/// Bytes a new map of `entries` allocates: its header and its tree's nodes, each of room
/// for 11 entries and at least 5 full but the root.
pub(super) fn map_bytes(entries: u64) -> u64 {
    let node = 11 * (size_of::<Key>() + size_of::<Value>()) as u64 + 128;
    VALUE_BYTES + node.saturating_mul(1 + entries / 5)
}

/// Steps for touching `bytes` bytes of a string: one per [`BYTES_PER_STEP`].
pub(super) fn content_work(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(BYTES_PER_STEP)
}

/// Bytes a string operation reads or writes for one step of work.
pub(super) const BYTES_PER_STEP: u64 = 16;

pub(super) fn key_len(key: &Key) -> usize {
    match key {
        Key::String(s) => s.len(),
        _ => 8,
    }
}

impl Key {
    pub(super) fn of(value: &Value) -> Option<Self> {
        Some(match value {
            Value::Bool(b) => Self::Bool(*b),
            Value::Int(i) => Self::Int(*i),
            Value::UInt(u) => Self::UInt(*u),
            Value::String(s) => Self::String(s.clone()),
            _ => return None,
        })
    }

    pub(super) fn to_value(&self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::Int(*i),
            Self::UInt(u) => Value::UInt(*u),
            Self::String(s) => Value::String(s.clone()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::UInt(u) => write!(f, "{u}u"),
            Self::String(s) => f.write_str(s),
        }
    }
}

/// Decodes a JSON document as CEL reads it: an object is a map with string keys, a
/// number of zero or more without a fraction a `uint`, one below zero an `int`, any other
/// a `double`.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(u64::try_from(v).map_or(Value::Int(v), Value::UInt))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Double(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::string(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::string(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(Arc::new(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            entries.insert(Key::String(Arc::new(key)), value);
        }
        Ok(Value::Map(Arc::new(entries)))
    }
}
