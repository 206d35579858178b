//! The operational records: the attempt log and the dead-letter archive.
//!
//! Their layouts in sled are in [`crate::attempt_log`] and [`crate::dead_letters`].

use hookwire_core::Transformed;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

/// The largest response excerpt the attempt log keeps.
pub const MAX_EXCERPT_BYTES: usize = 1024;

/// The [`AttemptRecord::outcome`] of an attempt that delivered.
pub const DELIVERED: &str = "delivered";

/// One HTTP attempt, as the attempt log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The webhook.
    pub subscription_id: Uuid,
    /// The event.
    pub event_id: String,
    /// The `webhook-id` header: the same for every attempt of one delivery.
    pub message_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it started (ms since the epoch).
    pub at_ms: u64,
    /// `delivered`, `retry`, `permanent` or `gone`.
    pub outcome: String,
    /// The HTTP status, when one came.
    pub status: Option<u16>,
    /// From request to the end of the body read.
    pub latency_ms: u64,
    /// `timeout`, `connect`, `tls`, `target_refused` or `other`, when no status came.
    pub error_kind: Option<String>,
    /// The failure in words.
    pub error: Option<String>,
    /// At most 1 KiB of the response body.
    pub response_excerpt: String,
    /// The size and SHA-256 of the body sent, when the webhook's transform made it; absent
    /// when the event's body was sent as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformed: Option<Transformed>,
}

impl AttemptRecord {
    /// A batch as one message of the attempts stream.
    pub fn encode_batch(batch: &[AttemptRecord]) -> Result<Vec<u8>> {
        encode(&batch)
    }

    /// A batch read from the attempts stream.
    pub fn decode_batch(raw: &[u8]) -> Result<Vec<AttemptRecord>> {
        decode(raw)
    }
}

/// A filter over one webhook's attempts.
#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Not before (ms).
    pub since_ms: Option<u64>,
    /// Before (ms).
    pub until_ms: Option<u64>,
    /// Continue after this cursor (from the previous page).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// A page of records and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The records, oldest first.
    pub items: Vec<T>,
    /// Pass it back to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A message that reached the dead queue, kept until purged or replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its own id (UUIDv7).
    pub id: Uuid,
    /// The organization, when the message had a valid one.
    pub org: Option<String>,
    /// The webhook, for a failed delivery; `None` for an event that never fanned out.
    pub subscription_id: Option<Uuid>,
    /// The event id, when known.
    pub event_id: Option<String>,
    /// The event type (the original routing key).
    pub event_type: Option<String>,
    /// One of the `x-hookwire-reason` values.
    pub reason: String,
    /// The reason in words.
    pub detail: String,
    /// Attempts made before it died.
    pub attempts: u32,
    /// When it was archived (ms).
    pub dead_at_ms: u64,
    /// The body, byte for byte, or its first bytes when `truncated`. Empty when the
    /// letter was read without its body ([`DeadLetterQuery::bodies`]).
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// The size of the message's body when it died; 0 in letters archived before sizes
    /// were kept, whose body is whole.
    #[serde(default)]
    pub body_bytes: u64,
    /// The archive kept only the first bytes of the body: the letter cannot be replayed.
    #[serde(default)]
    pub truncated: bool,
    /// The W3C `traceparent` the message carried, which a replay carries again; absent
    /// in letters archived before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Its `tracestate`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The size and SHA-256 of the body its last attempt sent, when the webhook's
    /// transform made it: the letter's `body` is always the event's, which a replay
    /// transforms again with the webhook's transform of then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformed: Option<Transformed>,
}

/// A filter over an organization's dead letters, and the page wanted.
#[derive(Debug, Clone)]
pub struct DeadLetterQuery {
    /// Only these ids.
    pub ids: Option<Vec<Uuid>>,
    /// Only this webhook's.
    pub subscription_id: Option<Uuid>,
    /// Not before (ms).
    pub since_ms: Option<u64>,
    /// Before (ms).
    pub until_ms: Option<u64>,
    /// Continue after this cursor (from the previous page).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Read each letter's body too. Without, a page reads only the small letter records:
    /// listing and selecting never load bodies.
    pub bodies: bool,
}

impl Default for DeadLetterQuery {
    /// Every letter with its body, a page of 100 at a time.
    fn default() -> Self {
        Self {
            ids: None,
            subscription_id: None,
            since_ms: None,
            until_ms: None,
            cursor: None,
            limit: 100,
            bodies: true,
        }
    }
}

impl DeadLetterQuery {
    pub(crate) fn matches(&self, d: &DeadLetter) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&d.id))
            && self
                .subscription_id
                .is_none_or(|s| d.subscription_id == Some(s))
            && self.since_ms.is_none_or(|t| d.dead_at_ms >= t)
            && self.until_ms.is_none_or(|t| d.dead_at_ms < t)
    }
}

pub(crate) fn attempt_prefix(subscription_id: &Uuid) -> Vec<u8> {
    subscription_id.as_bytes().to_vec()
}

/// A number at its default, left out of a stored record: sled writes each record's bytes
/// again every time it rewrites the record's leaf.
pub(crate) fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Corrupt(e.to_string()))
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| Error::Corrupt(e.to_string()))
}

/// [`decode`] of a value that borrows from `raw`.
pub(crate) fn decode_raw<'a, T: Deserialize<'a>>(raw: &'a [u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| Error::Corrupt(e.to_string()))
}

pub(crate) mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
