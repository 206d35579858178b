//! A delivery task: one (event, subscription) pair travelling through the work queue and
//! the retry tiers. The body stays the producer's bytes; the state rides in headers.

use hookwire_amqp::headers;
use hookwire_core::event::{ORG_HEADER, PUBLISHED_AT_HEADER, webhook_id};
use hookwire_core::{DeadReason, now_ms};
use lapin::BasicProperties;
use lapin::types::FieldTable;
use uuid::Uuid;

/// The event's id.
pub const EVENT_ID: &str = "x-hookwire-event-id";
/// The event type (the routing key is `deliver` in the work queue).
pub const EVENT_TYPE: &str = "x-hookwire-event-type";
/// The subscription the task delivers to.
pub const SUBSCRIPTION_ID: &str = "x-hookwire-subscription-id";
/// Attempts made so far.
pub const ATTEMPTS: &str = "x-hookwire-attempts";
/// When hookwire first saw the event, for `delivery.max_age_secs`.
pub const FIRST_SEEN_MS: &str = "x-hookwire-first-seen-ms";
/// Why a message is dead (one of [`DeadReason`]).
pub const REASON: &str = "x-hookwire-reason";
/// The reason in words.
pub const DETAIL: &str = "x-hookwire-detail";

const PERSISTENT: u8 = 2;

/// One delivery's state between attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The event's id.
    pub event_id: String,
    /// The organization.
    pub org: String,
    /// The event type.
    pub event_type: String,
    /// The subscription.
    pub subscription_id: Uuid,
    /// Attempts made so far.
    pub attempts: u32,
    /// When hookwire first saw the event (ms).
    pub first_seen_ms: u64,
    /// When the producer published it (ms), for end-to-end lag.
    pub published_at_ms: Option<u64>,
}

impl Task {
    /// The `webhook-id`: the same for every attempt of this pair.
    pub fn webhook_id(&self) -> String {
        webhook_id(&self.event_id, &self.subscription_id)
    }

    /// Properties of the task message; `expiration` is set by the caller for tiers.
    pub fn properties(&self) -> BasicProperties {
        let mut h = FieldTable::default();
        headers::set_text(&mut h, ORG_HEADER, &self.org);
        headers::set_text(&mut h, EVENT_ID, &self.event_id);
        headers::set_text(&mut h, EVENT_TYPE, &self.event_type);
        headers::set_text(&mut h, SUBSCRIPTION_ID, &self.subscription_id.to_string());
        headers::set_unsigned(&mut h, ATTEMPTS, u64::from(self.attempts));
        headers::set_unsigned(&mut h, FIRST_SEEN_MS, self.first_seen_ms);
        if let Some(at) = self.published_at_ms {
            headers::set_unsigned(&mut h, PUBLISHED_AT_HEADER, at);
        }
        BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into())
            .with_message_id(self.webhook_id().as_str().into())
            .with_timestamp(now_ms() / 1000)
            .with_headers(h)
    }

    /// Reads a task back from its headers.
    pub fn from_headers(h: Option<&FieldTable>) -> Result<Self, String> {
        let text = |key: &str| {
            headers::text(h, key)
                .map(str::to_owned)
                .ok_or_else(|| format!("task header `{key}` is missing"))
        };
        let subscription_id = text(SUBSCRIPTION_ID)?;
        Ok(Self {
            event_id: text(EVENT_ID)?,
            org: text(ORG_HEADER)?,
            event_type: text(EVENT_TYPE)?,
            subscription_id: Uuid::parse_str(&subscription_id)
                .map_err(|_| format!("task header `{SUBSCRIPTION_ID}` is not a UUID"))?,
            attempts: headers::unsigned(h, ATTEMPTS)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("task header `{ATTEMPTS}` is missing"))?,
            first_seen_ms: headers::unsigned(h, FIRST_SEEN_MS).unwrap_or_else(now_ms),
            published_at_ms: headers::unsigned(h, PUBLISHED_AT_HEADER),
        })
    }
}

/// Properties of a dead letter: the original headers, plus the reason and its detail.
pub fn dead_letter_properties(
    original: &BasicProperties,
    reason: DeadReason,
    detail: &str,
) -> BasicProperties {
    let mut h = original.headers().clone().unwrap_or_default();
    headers::set_text(&mut h, REASON, reason.as_str());
    headers::set_text(&mut h, DETAIL, detail);
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(h);
    if let Some(id) = original.message_id() {
        props = props.with_message_id(id.clone());
    }
    if let Some(ct) = original.content_type() {
        props = props.with_content_type(ct.clone());
    }
    if let Some(ts) = original.timestamp() {
        props = props.with_timestamp(*ts);
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_round_trips_through_headers() {
        let task = Task {
            event_id: "evt-1".into(),
            org: "acme".into(),
            event_type: "report_created".into(),
            subscription_id: Uuid::now_v7(),
            attempts: 3,
            first_seen_ms: 42,
            published_at_ms: Some(41),
        };
        let props = task.properties();
        assert_eq!(
            Task::from_headers(props.headers().as_ref()),
            Ok(task.clone())
        );
        assert_eq!(
            props.message_id().as_ref().map(|s| s.to_string()),
            Some(task.webhook_id())
        );
        let dead = dead_letter_properties(&props, DeadReason::Exhausted, "5 attempts");
        assert_eq!(
            headers::text(dead.headers().as_ref(), REASON),
            Some("exhausted")
        );
        assert_eq!(Task::from_headers(dead.headers().as_ref()), Ok(task));
    }

    #[test]
    fn broken_task_headers_are_named() {
        let err = Task::from_headers(None).expect_err("no headers");
        assert!(err.contains(SUBSCRIPTION_ID), "{err}");
    }
}
