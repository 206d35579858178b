//! Reading and writing AMQP header values the way every hookwire component agrees on.
//!
//! Producers in other languages send strings as long strings (pika, amqplib) or short
//! strings, and numbers as any integer width, so readers accept all of those.

use hookwire_core::OrgHeader;
use lapin::types::{AMQPValue, FieldTable, LongString};

/// A header as text, whatever string type carried it.
pub fn text<'a>(headers: Option<&'a FieldTable>, key: &str) -> Option<&'a str> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// A header as an unsigned integer, whatever width carried it.
pub fn unsigned(headers: Option<&FieldTable>, key: &str) -> Option<u64> {
    match headers?.inner().get(key)? {
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::Timestamp(n) => Some(*n),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

/// The `org` header as the wire contract sees it.
pub fn org(headers: Option<&FieldTable>) -> OrgHeader<'_> {
    match headers.and_then(|h| h.inner().get(hookwire_core::event::ORG_HEADER)) {
        None => OrgHeader::Missing,
        Some(_) => text(headers, hookwire_core::event::ORG_HEADER)
            .map_or(OrgHeader::NotText, OrgHeader::Text),
    }
}

/// Sets a text header.
pub fn set_text(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
}

/// Sets an integer header.
pub fn set_unsigned(headers: &mut FieldTable, key: &str, value: u64) {
    headers.insert(
        key.into(),
        AMQPValue::LongLongInt(i64::try_from(value).unwrap_or(i64::MAX)),
    );
}
