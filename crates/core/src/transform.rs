//! Transformations: a webhook may carry a CEL expression whose value, a map or a list,
//! becomes the JSON body sent instead of the event's, e.g. the `{"text": …}` a Slack
//! incoming webhook reads.
//!
//! A transform is a filter's expression with another purpose: the same language, inputs
//! (`body`, `event_type`), evaluator and cost model ([`crate::filter`]), so it is bounded
//! exactly as filters are: its static cost is checked when it is set, an evaluation stops
//! at [`BUDGET`], and the JSON text it gives is capped at [`MAX_TRANSFORMED_BODY_BYTES`].
//! Its source may be longer than a filter's ([`MAX_TRANSFORM_BYTES`]): a message card
//! spells out more literal structure than a condition does, and the cost check bounds
//! what that structure can do.

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::filter::{BUDGET, Cost, Filter, FilterError, FilterInput, Key, Kind, Value};

/// The longest transform accepted.
pub const MAX_TRANSFORM_BYTES: usize = 4096;
/// The largest body a transform may give, as JSON text.
pub const MAX_TRANSFORMED_BODY_BYTES: usize = 256 * 1024;

const TRANSFORM: Kind = Kind {
    noun: "transform",
    max_bytes: MAX_TRANSFORM_BYTES,
};

/// A parsed, checked transform.
#[derive(Clone, PartialEq, Eq)]
pub struct Transform {
    expression: Filter,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transform({:?})", self.source())
    }
}

/// Why a transform gave no body for an event: it failed on the event's body, reached its
/// budget, gave something other than a map or a list, or a body over the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError {
    /// The evaluation reached its budget of steps or bytes and was stopped.
    pub budget_exceeded: bool,
    message: String,
}

impl TransformError {
    fn new(message: String) -> Self {
        Self {
            budget_exceeded: false,
            message,
        }
    }
}

impl std::fmt::Display for TransformError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TransformError {}

impl Transform {
    /// Parses `source` and checks it against the rules that bound its cost.
    pub fn parse(source: &str) -> Result<Self, FilterError> {
        Filter::parse_as(source, TRANSFORM).map(|expression| Self { expression })
    }

    /// Loads a transform saved under earlier rules, never failing: one the current rules
    /// refuse fails every evaluation with the reason, which costs only its own webhook's
    /// deliveries (`transform_error`).
    pub fn load(source: &str) -> Self {
        Self {
            expression: Filter::load_as(source, TRANSFORM),
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        self.expression.source()
    }

    /// The most one evaluation can take, as the static check bounds it.
    pub fn cost(&self) -> Cost {
        self.expression.cost()
    }

    /// The body to send for this event: the expression's value as JSON text.
    pub fn apply(&self, input: &FilterInput<'_>) -> Result<Vec<u8>, TransformError> {
        let evaluation = self.expression.evaluate_within(input, BUDGET);
        let value = evaluation.result.map_err(|e| TransformError {
            budget_exceeded: e.budget_exceeded,
            message: e.to_string(),
        })?;
        match value {
            Value::Map(_) | Value::List(_) => json_text(&value),
            other => Err(TransformError::new(format!(
                "the transform gave {}, not a map or a list",
                other.type_name()
            ))),
        }
    }
}

/// What was sent in place of the event's body, as the attempt log and dead letters record
/// it: the size and SHA-256 of the bytes sent (and signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transformed {
    /// The size of the body sent.
    pub bytes: u64,
    /// Hex SHA-256 of the body sent.
    pub sha256: String,
}

impl Transformed {
    /// The record of sending `body`.
    pub fn of(body: &[u8]) -> Self {
        Self {
            bytes: body.len() as u64,
            sha256: hex::encode(Sha256::digest(body)),
        }
    }

    /// As one header value: `<bytes>:<sha256>`.
    pub fn header_value(&self) -> String {
        format!("{}:{}", self.bytes, self.sha256)
    }

    /// Reads [`Transformed::header_value`] back.
    pub fn from_header_value(text: &str) -> Option<Self> {
        let (bytes, sha256) = text.split_once(':')?;
        let well_formed = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return None;
        }
        Some(Self {
            bytes: bytes.parse().ok()?,
            sha256: sha256.to_owned(),
        })
    }
}

/// `value` as compact JSON text of at most [`MAX_TRANSFORMED_BODY_BYTES`]. A map's keys
/// come out in their sorted order; bytes become base64 text, as CEL's JSON mapping has
/// them. A map key that is not a string, a type, and a double that is not finite have no
/// JSON form and fail the transform.
fn json_text(value: &Value) -> Result<Vec<u8>, TransformError> {
    let mut out = Capped(Vec::new());
    match serde_json::to_writer(&mut out, &Json(value)) {
        Ok(()) => Ok(out.0),
        Err(e) if e.is_io() => Err(TransformError::new(format!(
            "the transform's body is larger than {} KiB",
            MAX_TRANSFORMED_BODY_BYTES / 1024
        ))),
        Err(e) => Err(TransformError::new(e.to_string())),
    }
}

/// A buffer that refuses to grow past [`MAX_TRANSFORMED_BODY_BYTES`]: values share their
/// parts, so a small evaluation can name a large text, which is never written whole.
struct Capped(Vec<u8>);

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_TRANSFORMED_BODY_BYTES {
            return Err(io::Error::other("over the cap"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Json<'a>(&'a Value);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Double(d) if d.is_finite() => s.serialize_f64(*d),
            Value::Double(d) => Err(S::Error::custom(format!(
                "the transform gave the double {d}, which has no JSON form"
            ))),
            Value::String(text) => s.serialize_str(text),
            Value::Bytes(bytes) => s.serialize_str(&STANDARD.encode(bytes)),
            Value::List(items) => s.collect_seq(items.iter().map(Json)),
            Value::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (key, value) in entries.iter() {
                    let Key::String(name) = key else {
                        return Err(S::Error::custom(format!(
                            "the transform gave a map with the key {key}, not a string: JSON object keys are strings"
                        )));
                    };
                    map.serialize_entry(name.as_str(), &Json(value))?;
                }
                map.end()
            }
            Value::Type(t) => Err(S::Error::custom(format!(
                "the transform gave the type {t}, which has no JSON form"
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
