//! Dead letters on the broker: the properties hookwire dead-letters a message with, and
//! reading a message of the dead queue back for the archive.

use super::*;

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

/// Properties of an event that breaks the wire contract, as a dead letter. It keeps its
/// routing key in a header: in the dead queue every message has the key `dead`. The
/// producer's own `x-hookwire-*` headers are dropped: only hookwire's may reach the
/// archive, whose replay would read them as a task's.
pub fn rejected_event_properties(
    message: &Delivery,
    reason: DeadReason,
    detail: &str,
) -> BasicProperties {
    let mut original = message.properties.clone();
    if let Some(h) = message.properties.headers() {
        original = original.with_headers(without_reserved(h));
    }
    let dead = dead_letter_properties(&original, reason, detail);
    let mut h = dead.headers().clone().unwrap_or_default();
    headers::set_text(&mut h, EVENT_TYPE, message.routing_key.as_str());
    dead.with_headers(h)
}

/// An event that breaks the wire contract, as a dead letter: its properties, and its body
/// or, past `max_body` bytes, only that prefix with the whole size in `x-hookwire-body-bytes`,
/// so an over-size event is not copied whole into the dead queue and the archive.
pub fn rejected_event<'a>(
    message: &'a Delivery,
    reason: DeadReason,
    detail: &str,
    max_body: usize,
) -> (&'a [u8], BasicProperties) {
    let props = rejected_event_properties(message, reason, detail);
    bounded_dead_letter(&message.data, props, max_body)
}

/// A dead letter's body and properties: past `max_body` bytes, only that prefix, with
/// the whole size in `x-hookwire-body-bytes`.
pub fn bounded_dead_letter(
    body: &[u8],
    props: BasicProperties,
    max_body: usize,
) -> (&[u8], BasicProperties) {
    if body.len() <= max_body {
        return (body, props);
    }
    let mut h = props.headers().clone().unwrap_or_default();
    headers::set_unsigned(&mut h, BODY_BYTES, body.len() as u64);
    (&body[..max_body], props.with_headers(h))
}

/// The headers without any `x-hookwire-*` one.
pub fn without_reserved(h: &FieldTable) -> FieldTable {
    let mut kept = FieldTable::default();
    for (key, value) in h.inner() {
        if !key.as_str().starts_with(RESERVED_PREFIX) {
            kept.insert(key.clone(), value.clone());
        }
    }
    kept
}

/// What a message of the dead queue says about itself.
///
/// hookwire's own dead letters carry `x-hookwire-reason`. Messages the broker
/// dead-lettered itself (a crash loop reaching `x-delivery-limit`) carry only the
/// broker's `x-death` header, from which the reason is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadMessage {
    /// Its organization, when it has a valid one.
    pub org: Option<String>,
    /// The subscription, when it was a task.
    pub subscription_id: Option<Uuid>,
    /// The event's id (a task's header, else the message id).
    pub event_id: Option<String>,
    /// The event type, when known.
    pub event_type: Option<String>,
    /// Why it is dead: a [`DeadReason`], or the broker's reason.
    pub reason: String,
    /// The reason in words.
    pub detail: String,
    /// Attempts made, 0 when it was never attempted.
    pub attempts: u32,
    /// The size of the body when it died: more than the message carries when hookwire
    /// dead-lettered only a prefix of it.
    pub body_bytes: u64,
    /// The W3C trace context it carried (a task's, or the producer's on an event).
    pub trace: Option<TraceParent>,
    /// What its last attempt sent, when the webhook's transform made the body.
    pub transformed: Option<Transformed>,
}

impl DeadMessage {
    /// Reads a message of the dead queue.
    ///
    /// A producer's message that the broker dead-lettered from an events queue itself (a
    /// crash loop) still carries whatever headers the producer gave it: its
    /// `x-hookwire-*` ones are not believed.
    pub fn read(message: &Delivery) -> Self {
        let all = message.properties.headers().as_ref();
        let death = first_death(all);
        let stripped;
        let h = if death.is_some_and(from_events_queue) {
            stripped = all.map(without_reserved);
            stripped.as_ref()
        } else {
            all
        };
        let (reason, detail) = match headers::text(h, REASON) {
            Some(reason) => (
                reason.to_owned(),
                headers::text(h, DETAIL).unwrap_or_default().to_owned(),
            ),
            None => broker_reason(death),
        };
        let event_type = headers::text(h, EVENT_TYPE)
            .map(str::to_owned)
            .or_else(|| death.and_then(death_routing_key))
            .or_else(|| Some(message.routing_key.to_string()).filter(|k| k != DEAD_KEY));
        Self {
            org: headers::text(h, ORG_HEADER)
                .filter(|o| is_valid_org(o))
                .map(str::to_owned),
            subscription_id: headers::text(h, SUBSCRIPTION_ID)
                .and_then(|s| Uuid::parse_str(s).ok()),
            event_id: headers::text(h, EVENT_ID).map(str::to_owned).or_else(|| {
                message
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string())
            }),
            event_type,
            reason,
            detail,
            attempts: headers::unsigned(h, ATTEMPTS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            body_bytes: headers::unsigned(h, BODY_BYTES)
                .unwrap_or(0)
                .max(message.data.len() as u64),
            trace: super::trace_of(h),
            transformed: headers::text(h, TRANSFORMED).and_then(Transformed::from_header_value),
        }
    }
}

/// Whether the broker dead-lettered the message from an events queue (`<ns>.events`).
pub(super) fn from_events_queue(death: &FieldTable) -> bool {
    headers::text(Some(death), "queue").is_some_and(|q| q.ends_with(".events"))
}

/// The most recent `x-death` entry (the broker puts it first).
pub(super) fn first_death(h: Option<&FieldTable>) -> Option<&FieldTable> {
    match h?.inner().get("x-death")? {
        AMQPValue::FieldArray(entries) => entries.as_slice().iter().find_map(|e| match e {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

pub(super) fn broker_reason(death: Option<&FieldTable>) -> (String, String) {
    let Some(death) = death else {
        return (
            "unknown".into(),
            "dead-lettered without x-hookwire-reason or x-death".into(),
        );
    };
    let queue = headers::text(Some(death), "queue").unwrap_or("?");
    let count = headers::unsigned(Some(death), "count").unwrap_or(0);
    match headers::text(Some(death), "reason").unwrap_or("?") {
        "delivery_limit" => (
            DeadReason::DeliveryLimit.as_str().to_owned(),
            format!(
                "the broker dead-lettered it from `{queue}` after too many redeliveries: a crash loop"
            ),
        ),
        other => (
            other.to_owned(),
            format!("the broker dead-lettered it from `{queue}` ({other}, {count} time(s))"),
        ),
    }
}

pub(super) fn death_routing_key(death: &FieldTable) -> Option<String> {
    match death.inner().get("routing-keys")? {
        AMQPValue::FieldArray(keys) => keys.as_slice().iter().find_map(|k| match k {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
            _ => None,
        }),
        _ => None,
    }
}
