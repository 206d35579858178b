//! RabbitMQ's account of a declaration refused for one argument (406
//! `PRECONDITION_FAILED`), e.g. `inequivalent arg 'x-max-age' for queue 'ns.attempts' in
//! vhost '/': received the value '7D' of type 'longstr' but current is the value '1D' of
//! type 'longstr'`. It names only the first argument that differs.

use std::fmt;

use lapin::types::{AMQPValue, LongString};

/// One argument a queue was made with that differs from what a declaration asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The argument, e.g. `x-max-age`.
    pub argument: String,
    /// What the declaration asked for; `None`: not set.
    pub asked: Option<String>,
    /// What the queue was made with; `None`: not set.
    pub current: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
        write!(
            f,
            "{} is {}, not {}",
            self.argument,
            shown(&self.current),
            shown(&self.asked)
        )
    }
}

/// An argument's value as RabbitMQ writes it: its text, and the name of its AMQP type
/// when the broker gives it (only when the other value is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Value {
    text: String,
    kind: Option<String>,
}

impl Value {
    /// The value as a declaration's argument, of its named type or else of the type of
    /// `asked` (what was declared in its place); `None` for a type no stream argument
    /// has. RabbitMQ compares integers by value whatever their width.
    pub(crate) fn to_amqp(&self, asked: Option<&AMQPValue>) -> Option<AMQPValue> {
        let kind = match (self.kind.as_deref(), asked) {
            (Some(kind), _) => kind,
            (None, Some(AMQPValue::LongString(_))) => "longstr",
            (None, Some(AMQPValue::Boolean(_))) => "bool",
            (
                None,
                Some(
                    AMQPValue::ShortShortInt(_)
                    | AMQPValue::ShortShortUInt(_)
                    | AMQPValue::ShortInt(_)
                    | AMQPValue::ShortUInt(_)
                    | AMQPValue::LongInt(_)
                    | AMQPValue::LongUInt(_)
                    | AMQPValue::LongLongInt(_),
                ),
            ) => "long",
            (None, _) => return None,
        };
        Some(match kind {
            "longstr" => AMQPValue::LongString(LongString::from(self.text.as_str())),
            "byte" | "short" | "signedint" | "long" | "unsignedbyte" | "unsignedshort"
            | "unsignedint" => AMQPValue::LongLongInt(self.text.parse().ok()?),
            "bool" => AMQPValue::Boolean(self.text.parse().ok()?),
            _ => return None,
        })
    }
}

/// What one refusal says: the argument and its two values (`None`: not set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inequivalent {
    pub(crate) argument: String,
    pub(crate) received: Option<Value>,
    pub(crate) current: Option<Value>,
}

impl Inequivalent {
    pub(crate) fn difference(&self) -> Difference {
        let text = |v: &Option<Value>| v.as_ref().map(|v| v.text.clone());
        Difference {
            argument: self.argument.clone(),
            asked: text(&self.received),
            current: text(&self.current),
        }
    }
}

/// Parses RabbitMQ's text of a refusal for one argument or property (`durable` too);
/// `None` for any other refusal.
pub(crate) fn parse(message: &str) -> Option<Inequivalent> {
    let rest = &message[message.find("inequivalent arg '")? + "inequivalent arg '".len()..];
    let (argument, rest) = rest.split_once('\'')?;
    let rest = &rest[rest.find(": received ")? + ": received ".len()..];
    let (received, current) = rest.split_once(" but current is ")?;
    Some(Inequivalent {
        argument: argument.to_owned(),
        received: value(received)?,
        current: value(current.trim_end())?,
    })
}

/// `none` as `Some(None)`; `the value 'V' of type 'T'` and `'V'` as `Some(Some(..))`;
/// anything else `None`.
fn value(text: &str) -> Option<Option<Value>> {
    if text == "none" {
        return Some(None);
    }
    if let Some(typed) = text.strip_prefix("the value '") {
        let (text, kind) = typed.rsplit_once("' of type '")?;
        return Some(Some(Value {
            text: text.to_owned(),
            kind: Some(kind.strip_suffix('\'')?.to_owned()),
        }));
    }
    let text = text.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(Some(Value {
        text: text.to_owned(),
        kind: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RabbitMQ 3.10.8's refusals of a stream declaration, as lapin reports them.
    const PREFIX: &str = "protocol error: AMQP soft error: PRECONDITION-FAILED: PRECONDITION_FAILED - inequivalent arg ";
    const QUEUE: &str = "for queue 'ns.attempts' in vhost '/'";

    fn refusal(argument: &str, values: &str) -> String {
        format!("{PREFIX}'{argument}' {QUEUE}: {values}")
    }

    fn value(text: &str, kind: Option<&str>) -> Option<Value> {
        Some(Value {
            text: text.into(),
            kind: kind.map(Into::into),
        })
    }

    #[test]
    fn a_refusal_names_the_argument_and_both_values() {
        let cases = [
            (
                refusal(
                    "x-max-length-bytes",
                    "received none but current is the value '1073741824' of type 'long'",
                ),
                "x-max-length-bytes",
                None,
                value("1073741824", Some("long")),
            ),
            (
                refusal(
                    "x-initial-cluster-size",
                    "received the value '3' of type 'signedint' but current is none",
                ),
                "x-initial-cluster-size",
                value("3", Some("signedint")),
                None,
            ),
            (
                refusal("x-max-age", "received '7D' but current is '86400s'"),
                "x-max-age",
                value("7D", None),
                value("86400s", None),
            ),
            (
                refusal("durable", "received 'false' but current is 'true'"),
                "durable",
                value("false", None),
                value("true", None),
            ),
        ];
        for (message, argument, received, current) in cases {
            let parsed = parse(&message).unwrap_or_else(|| panic!("{message}"));
            assert_eq!(
                parsed,
                Inequivalent {
                    argument: argument.into(),
                    received,
                    current,
                }
            );
        }
        let age = parse(&refusal(
            "x-max-age",
            "received '7D' but current is '86400s'",
        ))
        .expect("parsed")
        .difference();
        assert_eq!(age.to_string(), "x-max-age is 86400s, not 7D");
    }

    #[test]
    fn other_refusals_are_not_read_as_an_argument() {
        for message in [
            "protocol error: AMQP soft error: PRECONDITION-FAILED: PRECONDITION_FAILED - invalid arg 'x-max-age' for queue 'ns.attempts' in vhost '/': {invalid_max_age,<<\"7X\">>}",
            "protocol error: AMQP soft error: NOT-FOUND: NOT_FOUND - no queue 'ns.attempts' in vhost '/'",
            "inequivalent arg 'x-max-age' for queue 'q' in vhost '/': received something else",
        ] {
            assert_eq!(parse(message), None, "{message}");
        }
    }

    #[test]
    fn a_value_becomes_an_argument_of_its_type_or_of_the_one_asked() {
        let long = value("1073741824", Some("long")).expect("a value");
        assert_eq!(long.to_amqp(None), Some(AMQPValue::LongLongInt(1 << 30)));
        let untyped = value("86400s", None).expect("a value");
        assert_eq!(
            untyped.to_amqp(Some(&AMQPValue::LongString("7D".into()))),
            Some(AMQPValue::LongString("86400s".into()))
        );
        assert_eq!(untyped.to_amqp(None), None);
        let bytes = value("5", None).expect("a value");
        assert_eq!(
            bytes.to_amqp(Some(&AMQPValue::LongInt(7))),
            Some(AMQPValue::LongLongInt(5))
        );
        let table = value("x", Some("table")).expect("a value");
        assert_eq!(table.to_amqp(None), None);
    }
}
