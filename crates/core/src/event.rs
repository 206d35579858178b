//! The wire contract: how a producer's AMQP message becomes an [`Event`], or a
//! [`Rejection`] that names the dead-letter reason.
//!
//! Decoding is pure so that the consumer, the property tests and the fuzz targets all run
//! exactly the same rules.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::Catalog;

/// The header that names the organization owning an event.
pub const ORG_HEADER: &str = "org";
/// Optional header with the publish time in milliseconds; AMQP's `timestamp` is whole seconds.
pub const PUBLISHED_AT_HEADER: &str = "published_at_ms";
/// The largest organization name: `[A-Za-z0-9_-]{1,64}`.
const MAX_ORG_LEN: usize = 64;
/// AMQP short strings carry at most 255 bytes, and the id travels as one.
const MAX_ID_LEN: usize = 255;

/// Why a message ended in `hookwire.dead`; sent as the `x-hookwire-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadReason {
    /// The body is not a JSON object.
    InvalidJson,
    /// The `org` header is absent, not a string, or not `[A-Za-z0-9_-]{1,64}`.
    MissingOrg,
    /// The routing key is not an event type of the catalog.
    UnknownEvent,
    /// The body lacks `event` or a field the catalog requires, or has it with a non-string value.
    MissingField,
    /// The body's `event` differs from the routing key.
    EventMismatch,
    /// The body is larger than the configured limit.
    TooLarge,
    /// Every attempt of the retry schedule failed.
    Exhausted,
    /// The receiver answered with a status that is not worth retrying.
    PermanentStatus,
    /// The receiver answered 410 Gone; the webhook was disabled.
    Gone,
    /// The webhook was disabled while the delivery waited; replayable.
    WebhookDisabled,
    /// The delivery waited longer than `delivery.max_age`.
    Expired,
    /// The broker dead-lettered the message after too many redeliveries: a crash loop.
    DeliveryLimit,
    /// A producer published an operational event type, which only hookwire itself sends.
    ReservedEventType,
    /// hookwire can never handle the message: a record it needs is damaged, or its handler
    /// panicked.
    Unprocessable,
    /// The webhook's transform gave no body for the event: it failed on the event's body,
    /// reached its budget, or gave a value with no JSON body. Replayable once the
    /// transform is fixed.
    TransformError,
}

impl DeadReason {
    /// Every reason, for exhaustive tests and metrics.
    pub const ALL: [Self; 15] = [
        Self::InvalidJson,
        Self::MissingOrg,
        Self::UnknownEvent,
        Self::MissingField,
        Self::EventMismatch,
        Self::TooLarge,
        Self::Exhausted,
        Self::PermanentStatus,
        Self::Gone,
        Self::WebhookDisabled,
        Self::Expired,
        Self::DeliveryLimit,
        Self::ReservedEventType,
        Self::Unprocessable,
        Self::TransformError,
    ];

    /// The header value, e.g. `invalid_json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::MissingOrg => "missing_org",
            Self::UnknownEvent => "unknown_event",
            Self::MissingField => "missing_field",
            Self::EventMismatch => "event_mismatch",
            Self::TooLarge => "too_large",
            Self::Exhausted => "exhausted",
            Self::PermanentStatus => "permanent_status",
            Self::Gone => "gone",
            Self::WebhookDisabled => "webhook_disabled",
            Self::Expired => "expired",
            Self::DeliveryLimit => "delivery_limit",
            Self::ReservedEventType => "reserved_event_type",
            Self::Unprocessable => "unprocessable",
            Self::TransformError => "transform_error",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown dead-letter reason `{s}`"))
    }
}

/// A message refused by the wire contract: where it goes and why, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The `x-hookwire-reason` value.
    pub reason: DeadReason,
    /// The `x-hookwire-detail` value, readable by a person.
    pub detail: String,
}

impl Rejection {
    fn new(reason: DeadReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The `org` header as the AMQP message carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgHeader<'a> {
    /// No `org` header.
    Missing,
    /// A string header.
    Text(&'a str),
    /// A header of another AMQP type (a number, a table…).
    NotText,
}

/// The parts of an AMQP message that the wire contract reads.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    /// The routing key: the event type.
    pub routing_key: &'a str,
    /// The `org` header.
    pub org: OrgHeader<'a>,
    /// The `message_id` property: the event's unique id.
    pub message_id: Option<&'a str>,
    /// The AMQP `timestamp` property, in seconds.
    pub timestamp_secs: Option<u64>,
    /// The `published_at_ms` header.
    pub published_at_ms: Option<u64>,
    /// The body, forwarded byte for byte.
    pub body: &'a [u8],
}

/// An event that passed the wire contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The producer's `message_id`, or a deterministic id derived from the message.
    pub id: String,
    /// The organization that owns the event.
    pub org: String,
    /// The event type, equal to the routing key and the body's `event`.
    pub event_type: String,
    /// When the producer published it, in milliseconds, if it said so.
    pub published_at_ms: Option<u64>,
}

/// Whether `org` is `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_org(org: &str) -> bool {
    !org.is_empty()
        && org.len() <= MAX_ORG_LEN
        && org
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A JSON object's top-level fields, as far as the wire contract reads them: which are
/// strings, and their text. Every message is checked this way, so the common body is read
/// without copying (keys and values borrowed from it); a key with escapes takes the
/// slower, owning parse.
enum Fields<'a> {
    Borrowed(HashMap<&'a str, &'a RawValue>),
    Owned(serde_json::Map<String, Value>),
}

/// One field's value.
enum Field<'a> {
    Text(Cow<'a, str>),
    Other,
}

impl<'a> Fields<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        match serde_json::from_slice(body) {
            Ok(fields) => Ok(Self::Borrowed(fields)),
            // Escaped keys, or not an object at all: the owning parse decides, and its
            // error is the one reported.
            Err(_) => serde_json::from_slice(body).map(Self::Owned),
        }
    }

    fn get(&self, name: &str) -> Option<Field<'_>> {
        match self {
            Self::Borrowed(fields) => fields.get(name).map(|raw| {
                let json = raw.get();
                if !json.starts_with('"') {
                    return Field::Other;
                }
                serde_json::from_str::<&str>(json)
                    .map(Cow::Borrowed)
                    .or_else(|_| serde_json::from_str::<String>(json).map(Cow::Owned))
                    .map_or(Field::Other, Field::Text)
            }),
            Self::Owned(fields) => fields.get(name).map(|value| match value {
                Value::String(text) => Field::Text(Cow::Borrowed(text)),
                _ => Field::Other,
            }),
        }
    }
}

/// Applies the wire contract to one message. The body itself is not copied: the caller
/// keeps it and forwards it byte for byte.
pub fn decode(raw: &RawEvent<'_>, catalog: &Catalog, max_bytes: usize) -> Result<Event, Rejection> {
    if raw.body.len() > max_bytes {
        return Err(Rejection::new(
            DeadReason::TooLarge,
            format!("body is {} bytes; the limit is {max_bytes}", raw.body.len()),
        ));
    }
    let body = Fields::parse(raw.body).map_err(|e| {
        Rejection::new(
            DeadReason::InvalidJson,
            format!("body is not a JSON object: {e}"),
        )
    })?;
    let org = match raw.org {
        OrgHeader::Text(org) if is_valid_org(org) => org,
        OrgHeader::Text(org) => {
            return Err(Rejection::new(
                DeadReason::MissingOrg,
                format!(
                    "org header `{}` is not [A-Za-z0-9_-]{{1,64}}",
                    truncate(org, 80)
                ),
            ));
        }
        OrgHeader::NotText => {
            return Err(Rejection::new(
                DeadReason::MissingOrg,
                "org header is not a string",
            ));
        }
        OrgHeader::Missing => return Err(Rejection::new(DeadReason::MissingOrg, "no org header")),
    };
    let Some(event_type) = catalog.get(raw.routing_key) else {
        return Err(Rejection::new(
            DeadReason::UnknownEvent,
            format!(
                "routing key `{}` is not an event type of the catalog",
                truncate(raw.routing_key, 80)
            ),
        ));
    };
    match body.get("event") {
        Some(Field::Text(name)) if name == raw.routing_key => {}
        Some(Field::Text(name)) => {
            return Err(Rejection::new(
                DeadReason::EventMismatch,
                format!(
                    "body event `{}` differs from routing key `{}`",
                    truncate(&name, 80),
                    raw.routing_key
                ),
            ));
        }
        Some(_) => {
            return Err(Rejection::new(
                DeadReason::MissingField,
                "field `event` is not a string",
            ));
        }
        None => {
            return Err(Rejection::new(
                DeadReason::MissingField,
                "body has no `event` field",
            ));
        }
    }
    for field in &event_type.fields {
        match body.get(field) {
            Some(Field::Text(_)) => {}
            Some(_) => {
                return Err(Rejection::new(
                    DeadReason::MissingField,
                    format!("field `{field}` is not a string"),
                ));
            }
            None => {
                return Err(Rejection::new(
                    DeadReason::MissingField,
                    format!("`{}` requires field `{field}`", event_type.name),
                ));
            }
        }
    }
    let id = match raw.message_id {
        Some(id) if !id.is_empty() && id.len() <= MAX_ID_LEN => id.to_owned(),
        _ => derived_event_id(raw.routing_key, org, raw.body, raw.timestamp_secs),
    };
    Ok(Event {
        id,
        org: org.to_owned(),
        event_type: event_type.name.clone(),
        published_at_ms: raw
            .published_at_ms
            .or(raw.timestamp_secs.map(|s| s.saturating_mul(1000))),
    })
}

/// Applies the wire contract to a producer's message: [`decode`], and the operational
/// types refused. hookwire sends those itself, as tasks on the work exchange that
/// producers cannot write to, so one on the events exchange is a forgery.
pub fn decode_produced(
    raw: &RawEvent<'_>,
    catalog: &Catalog,
    max_bytes: usize,
) -> Result<Event, Rejection> {
    let event = decode(raw, catalog, max_bytes)?;
    if catalog
        .get(&event.event_type)
        .is_some_and(|t| t.operational)
    {
        return Err(Rejection::new(
            DeadReason::ReservedEventType,
            format!(
                "`{}` is an operational event type: only hookwire sends it",
                event.event_type
            ),
        ));
    }
    Ok(event)
}

/// What a task's body must be before hookwire signs it: no larger than an event may be,
/// a JSON object, and the event the task's header says it is. Tasks are hookwire's own
/// messages, but the broker is not trusted to hold only those.
pub fn check_task_body(body: &[u8], event_type: &str, max_bytes: usize) -> Result<(), Rejection> {
    if body.len() > max_bytes {
        return Err(Rejection::new(
            DeadReason::TooLarge,
            format!(
                "task body is {} bytes; the limit is {max_bytes}",
                body.len()
            ),
        ));
    }
    let object = Fields::parse(body).map_err(|e| {
        Rejection::new(
            DeadReason::InvalidJson,
            format!("task body is not a JSON object: {e}"),
        )
    })?;
    match object.get("event") {
        Some(Field::Text(name)) if name == event_type => Ok(()),
        _ => Err(Rejection::new(
            DeadReason::EventMismatch,
            format!("task body's `event` is not `{}`", truncate(event_type, 80)),
        )),
    }
}

/// The id of an event published without `message_id`: a hash of what identifies the
/// message, so that a redelivery of the same message keeps the same id.
pub fn derived_event_id(
    routing_key: &str,
    org: &str,
    body: &[u8],
    timestamp_secs: Option<u64>,
) -> String {
    let mut hash = Sha256::new();
    for part in [routing_key.as_bytes(), org.as_bytes(), body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.update(timestamp_secs.unwrap_or(0).to_be_bytes());
    format!("evt_{}", &hex::encode(hash.finalize())[..32])
}

/// The `webhook-id` of one (event, subscription) pair: the same for every attempt and every
/// redelivery, so that receivers can drop duplicates.
pub fn webhook_id(event_id: &str, subscription_id: &uuid::Uuid) -> String {
    let mut hash = Sha256::new();
    hash.update((event_id.len() as u64).to_be_bytes());
    hash.update(event_id.as_bytes());
    hash.update(subscription_id.as_bytes());
    format!("msg_{}", &hex::encode(hash.finalize())[..32])
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests;
