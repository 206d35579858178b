//! Every message hookwire writes or reads on the broker, encoded and decoded here only:
//! events (the wire contract producers follow, and hookwire's operational events), tasks
//! (one delivery between attempts), dead letters, and replays of dead letters.

use std::time::Duration;

use hookwire_core::event::{
    self, ORG_HEADER, OrgHeader, PUBLISHED_AT_HEADER, RawEvent, is_valid_org, webhook_id,
};
use hookwire_core::trace::{TRACEPARENT, TRACESTATE, TraceParent};
use hookwire_core::{Catalog, DeadReason, Transformed, now_ms};
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::topology::{DEAD_KEY, DELIVER_KEY};
use crate::{Error, Names, Result, headers};

/// Persistent, so a broker restart keeps it (AMQP 0-9-1 `delivery-mode`).
const PERSISTENT: u8 = 2;
const JSON: &str = "application/json";
/// The body limit the encoder holds events to: the wire contract's default.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Task header: the event's id.
pub const EVENT_ID: &str = "x-hookwire-event-id";
/// Task header: the event type (the routing key is `deliver` in the work queue).
pub const EVENT_TYPE: &str = "x-hookwire-event-type";
/// Task header: the subscription the task delivers to.
pub const SUBSCRIPTION_ID: &str = "x-hookwire-subscription-id";
/// Instead of [`SUBSCRIPTION_ID`], on one message of a large fan-out: the subscriptions
/// it carries the event's first attempt to, comma-separated.
pub const SUBSCRIPTION_IDS: &str = "x-hookwire-subscription-ids";
/// The most subscriptions one fan-out message names; a message naming more is refused.
pub const FANOUT_CHUNK_MAX: usize = 64;
/// Task header: attempts made so far.
pub const ATTEMPTS: &str = "x-hookwire-attempts";
/// Task header: when hookwire first saw the event, for `delivery.max_age`.
pub const FIRST_SEEN_MS: &str = "x-hookwire-first-seen-ms";
/// Task header: since when (ms) it has been deferred without an attempt, for
/// `delivery.circuit_max_deferral`.
pub const DEFERRED_SINCE_MS: &str = "x-hookwire-deferred-since-ms";
/// Task header: when (ms) its tier is due to expire it back to the work queue, so that a
/// tier that does not expire on time is noticed.
pub const DUE_MS: &str = "x-hookwire-due-ms";
/// Task header: which handling of which message published it (32 hex digits), so that a
/// copy left behind by a handling that a redelivery made again is not attempted beside
/// the redelivery's own.
pub const LINEAGE: &str = "x-hookwire-lineage";
/// Dead-letter header: why a message is dead (one of [`DeadReason`]).
pub const REASON: &str = "x-hookwire-reason";
/// Dead-letter header: the reason in words.
pub const DETAIL: &str = "x-hookwire-detail";
/// Dead-letter header: the size of the body when only a prefix of it was dead-lettered.
pub const BODY_BYTES: &str = "x-hookwire-body-bytes";
/// Event header: a dead letter an operator replayed, delivered even though its event id
/// was seen before.
pub const REPLAYED: &str = "x-hookwire-replayed";
/// Dead-letter header: the size and SHA-256 of the body the last attempt sent, when the
/// webhook's transform made it (`<bytes>:<sha256>`).
pub const TRANSFORMED: &str = "x-hookwire-transformed";
/// Every header hookwire's own messages rely on starts with this; producers' are removed.
pub const RESERVED_PREFIX: &str = "x-hookwire-";

// ---- Events -------------------------------------------------------------------------

/// An event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    /// The organization that owns it.
    pub org: String,
    /// Its type, e.g. `report_run_completed`.
    pub event_type: String,
    /// Its unique id. Keep it when publishing the same event again, so receivers can
    /// drop the duplicate; two different events never share one.
    pub id: String,
    /// The catalog fields, e.g. `{"report_run_url": "https://…"}`; `event` is added.
    pub data: Map<String, Value>,
}

/// An event's body and properties, refusing anything the wire contract would dead-letter.
pub fn encode_event(
    catalog: &Catalog,
    event: &OutgoingEvent,
) -> Result<(Vec<u8>, BasicProperties)> {
    let Some(event_type) = catalog.get(&event.event_type) else {
        return Err(Error::Contract(format!(
            "unknown event type `{}`; known: {}",
            event.event_type,
            catalog.names_joined()
        )));
    };
    let mut expected: Vec<&str> = event_type.fields.iter().map(String::as_str).collect();
    let mut given: Vec<&str> = event.data.keys().map(String::as_str).collect();
    expected.sort_unstable();
    given.sort_unstable();
    if expected != given {
        return Err(Error::Contract(format!(
            "`{}` carries exactly the fields [{}], not [{}]",
            event_type.name,
            expected.join(", "),
            given.join(", ")
        )));
    }
    let body = event_body(event)?;
    let published_at_ms = now_ms();
    let raw = RawEvent {
        routing_key: &event.event_type,
        org: OrgHeader::Text(&event.org),
        message_id: Some(&event.id),
        timestamp_secs: Some(published_at_ms / 1000),
        published_at_ms: Some(published_at_ms),
        body: &body,
    };
    // The same function the consumer runs: nothing encoded here can be dead-lettered for
    // breaking the contract.
    event::decode_produced(&raw, catalog, MAX_EVENT_BYTES)
        .map_err(|r| Error::Contract(r.detail))?;
    if event.id.is_empty() || event.id.len() > 255 {
        return Err(Error::Contract(
            "the event id must have 1 to 255 bytes".into(),
        ));
    }
    let properties = event_properties(Some(&event.org), Some(&event.id), Some(published_at_ms))
        .with_timestamp(published_at_ms / 1000);
    Ok((body, properties))
}

/// The body of an operational event, checked against the catalog like any event. Only
/// hookwire sends these, as one task per subscriber on the work exchange: producers
/// cannot write there, and the events exchange refuses operational types.
pub fn encode_operational(catalog: &Catalog, event: &OutgoingEvent) -> Result<Vec<u8>> {
    if !catalog
        .get(&event.event_type)
        .is_some_and(|t| t.operational)
    {
        return Err(Error::Contract(format!(
            "`{}` is not an operational event type",
            event.event_type
        )));
    }
    let body = event_body(event)?;
    let raw = RawEvent {
        routing_key: &event.event_type,
        org: OrgHeader::Text(&event.org),
        message_id: Some(&event.id),
        timestamp_secs: None,
        published_at_ms: None,
        body: &body,
    };
    event::decode(&raw, catalog, MAX_EVENT_BYTES).map_err(|r| Error::Contract(r.detail))?;
    Ok(body)
}

/// An operational event about a delivery of `cause`: its id is derived from the cause, so
/// a redelivered cause announces the same event. Encode it with [`encode_event`].
pub fn operational_event(
    cause: &Task,
    event_type: &str,
    fields: &[(&str, String)],
) -> OutgoingEvent {
    OutgoingEvent {
        org: cause.org.clone(),
        event_type: event_type.to_owned(),
        id: format!("{event_type}_{}", cause.webhook_id()),
        data: fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Value::from(value.as_str())))
            .collect(),
    }
}

/// An event's body: `event` first, as in Mode's payloads, then the catalog fields.
fn event_body(event: &OutgoingEvent) -> Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        event: &'a str,
        #[serde(flatten)]
        data: &'a Map<String, Value>,
    }
    serde_json::to_vec(&Body {
        event: &event.event_type,
        data: &event.data,
    })
    .map_err(|e| Error::Contract(e.to_string()))
}

/// The properties every event on the events exchange has, and those of it that are known.
fn event_properties(
    org: Option<&str>,
    id: Option<&str>,
    published_at_ms: Option<u64>,
) -> BasicProperties {
    let mut h = FieldTable::default();
    if let Some(org) = org {
        headers::set_text(&mut h, ORG_HEADER, org);
    }
    if let Some(at) = published_at_ms {
        headers::set_unsigned(&mut h, PUBLISHED_AT_HEADER, at);
    }
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(JSON.into());
    let properties = match id {
        Some(id) => properties.with_message_id(id.into()),
        None => properties,
    };
    properties.with_headers(h)
}

// ---- Tasks --------------------------------------------------------------------------

/// One delivery's state between attempts: one (event, subscription) pair travelling
/// through the work queue and the retry tiers. The body stays the producer's bytes; the
/// state rides in headers.
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
    /// Since when (ms) it has been deferred without an attempt; `None` if it was not.
    pub deferred_since_ms: Option<u64>,
    /// When (ms) the tier it comes back from was due to expire it; `None` if it was
    /// not parked. Read only: [`Task::parked_properties`] sets it.
    pub due_ms: Option<u64>,
    /// The handling its message came from, and that the messages published while it is
    /// handled come from once the engine sets it; `None`: not known (an event's first
    /// task, a resend, a replay).
    pub lineage: Option<u128>,
    /// The trace its attempts belong to, as the `traceparent` and `tracestate` headers of
    /// the task message: W3C's own names, not `x-hookwire-*` ones, so that a dead letter
    /// keeps them and a broker-side tracer reads them too. `None`: no trace.
    pub trace: Option<TraceParent>,
}

impl Task {
    /// A task that has made no attempt yet: never deferred, never parked.
    pub fn new(
        event_id: &str,
        org: &str,
        event_type: &str,
        subscription_id: Uuid,
        first_seen_ms: u64,
        published_at_ms: Option<u64>,
    ) -> Self {
        Self {
            event_id: event_id.to_owned(),
            org: org.to_owned(),
            event_type: event_type.to_owned(),
            subscription_id,
            attempts: 0,
            first_seen_ms,
            published_at_ms,
            deferred_since_ms: None,
            due_ms: None,
            lineage: None,
            trace: None,
        }
    }

    /// The same task in `trace`.
    pub fn with_trace(self, trace: Option<TraceParent>) -> Self {
        Self { trace, ..self }
    }

    /// The `webhook-id`: the same for every attempt of this pair.
    pub fn webhook_id(&self) -> String {
        webhook_id(&self.event_id, &self.subscription_id)
    }

    /// Properties of the task message on the work exchange.
    pub fn properties(&self) -> BasicProperties {
        let subscription = self.subscription_id.to_string();
        self.properties_for(SUBSCRIPTION_ID, &subscription, &self.webhook_id())
    }

    /// Properties of one message that carries this task's event, not yet attempted, to
    /// each of `subscriptions` (a chunk of a large fan-out; this task's own subscription
    /// is not named). A build without chunks finds no [`SUBSCRIPTION_ID`] in it and
    /// dead-letters it as `missing_field`, never delivering to one subscription alone.
    pub fn chunk_properties(&self, subscriptions: &[Uuid]) -> BasicProperties {
        let ids: Vec<String> = subscriptions.iter().map(Uuid::to_string).collect();
        self.properties_for(SUBSCRIPTION_IDS, &ids.join(","), &self.event_id)
    }

    fn properties_for(&self, key: &str, subscriptions: &str, message_id: &str) -> BasicProperties {
        let mut h = FieldTable::default();
        headers::set_text(&mut h, ORG_HEADER, &self.org);
        headers::set_text(&mut h, EVENT_ID, &self.event_id);
        headers::set_text(&mut h, EVENT_TYPE, &self.event_type);
        headers::set_text(&mut h, key, subscriptions);
        headers::set_unsigned(&mut h, ATTEMPTS, u64::from(self.attempts));
        headers::set_unsigned(&mut h, FIRST_SEEN_MS, self.first_seen_ms);
        if let Some(at) = self.published_at_ms {
            headers::set_unsigned(&mut h, PUBLISHED_AT_HEADER, at);
        }
        if let Some(since) = self.deferred_since_ms {
            headers::set_unsigned(&mut h, DEFERRED_SINCE_MS, since);
        }
        if let Some(lineage) = self.lineage {
            headers::set_text(&mut h, LINEAGE, &format!("{lineage:032x}"));
        }
        if let Some(trace) = &self.trace {
            set_trace(&mut h, trace);
        }
        BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(JSON.into())
            .with_message_id(message_id.into())
            .with_timestamp(now_ms() / 1000)
            .with_headers(h)
    }

    /// Properties of the task parked in a tier: it expires back to the work queue after
    /// `expiration`.
    pub fn parked_properties(&self, expiration: Duration) -> BasicProperties {
        let props = self.properties();
        let mut h = props.headers().clone().unwrap_or_default();
        headers::set_unsigned(&mut h, DUE_MS, now_ms() + expiration.as_millis() as u64);
        props
            .with_headers(h)
            .with_expiration(expiration.as_millis().to_string().as_str().into())
    }

    /// Properties of the task as a dead letter.
    pub fn dead_letter_properties(&self, reason: DeadReason, detail: &str) -> BasicProperties {
        dead_letter_properties(&self.properties(), reason, detail)
    }

    /// [`Task::dead_letter_properties`], saying what the last attempt sent when the
    /// webhook's transform made it.
    pub fn dead_letter_properties_sent(
        &self,
        reason: DeadReason,
        detail: &str,
        transformed: Option<&Transformed>,
    ) -> BasicProperties {
        let props = self.dead_letter_properties(reason, detail);
        let Some(transformed) = transformed else {
            return props;
        };
        let mut h = props.headers().clone().unwrap_or_default();
        headers::set_text(&mut h, TRANSFORMED, &transformed.header_value());
        props.with_headers(h)
    }

    /// Reads a task back from its message's headers.
    pub fn from_headers(h: Option<&FieldTable>) -> Result<Self, String> {
        let subscription_id = headers::text(h, SUBSCRIPTION_ID)
            .ok_or_else(|| format!("task header `{SUBSCRIPTION_ID}` is missing"))?;
        let subscription_id = Uuid::parse_str(subscription_id)
            .map_err(|_| format!("task header `{SUBSCRIPTION_ID}` is not a UUID"))?;
        Self::read(h, subscription_id)
    }

    /// The tasks a message of the work queue carries: its own, or one for each
    /// subscription a fan-out chunk names ([`Task::chunk_properties`]), without repeats.
    pub fn all_from_headers(h: Option<&FieldTable>) -> Result<Vec<Self>, String> {
        let Some(list) = headers::text(h, SUBSCRIPTION_IDS) else {
            return Self::from_headers(h).map(|task| vec![task]);
        };
        let named = list.split(',').count();
        if named > FANOUT_CHUNK_MAX {
            return Err(format!(
                "task header `{SUBSCRIPTION_IDS}` names {named} subscriptions, more than {FANOUT_CHUNK_MAX}"
            ));
        }
        let mut ids = list
            .split(',')
            .map(|id| {
                Uuid::parse_str(id).map_err(|_| {
                    format!("task header `{SUBSCRIPTION_IDS}` holds `{id}`, not a UUID")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        ids.dedup();
        let first = Self::read(h, ids[0])?;
        Ok(ids
            .into_iter()
            .map(|subscription_id| Self {
                subscription_id,
                ..first.clone()
            })
            .collect())
    }

    fn read(h: Option<&FieldTable>, subscription_id: Uuid) -> Result<Self, String> {
        let text = |key: &str| {
            headers::text(h, key)
                .map(str::to_owned)
                .ok_or_else(|| format!("task header `{key}` is missing"))
        };
        Ok(Self {
            event_id: text(EVENT_ID)?,
            org: text(ORG_HEADER)?,
            event_type: text(EVENT_TYPE)?,
            subscription_id,
            attempts: attempts_made(h)?,
            first_seen_ms: headers::unsigned(h, FIRST_SEEN_MS).unwrap_or_else(now_ms),
            published_at_ms: headers::unsigned(h, PUBLISHED_AT_HEADER),
            deferred_since_ms: headers::unsigned(h, DEFERRED_SINCE_MS),
            due_ms: headers::unsigned(h, DUE_MS),
            // Unreadable: the copy is attempted, as one without a lineage is.
            lineage: headers::text(h, LINEAGE).and_then(|l| u128::from_str_radix(l, 16).ok()),
            trace: trace_of(h),
        })
    }
}

/// A task's attempts so far: refused unless one more attempt's number fits in a `u32`,
/// so that a forged count is a contract breach here, not an overflow in the engine.
fn attempts_made(h: Option<&FieldTable>) -> Result<u32, String> {
    let n = headers::unsigned(h, ATTEMPTS)
        .ok_or_else(|| format!("task header `{ATTEMPTS}` is missing"))?;
    u32::try_from(n)
        .ok()
        .filter(|n| n.checked_add(1).is_some())
        .ok_or_else(|| {
            format!(
                "task header `{ATTEMPTS}` is {n}: more than {} attempts",
                u32::MAX - 1
            )
        })
}

/// The W3C trace context of a message's headers (a producer's event, or a task); `None`
/// when `traceparent` is missing or malformed.
pub fn trace_of(h: Option<&FieldTable>) -> Option<TraceParent> {
    TraceParent::from_headers(headers::text(h, TRACEPARENT), headers::text(h, TRACESTATE))
}

/// `properties` with the `traceparent` and `tracestate` headers of `trace`.
pub fn with_trace(properties: BasicProperties, trace: &TraceParent) -> BasicProperties {
    let mut h = properties.headers().clone().unwrap_or_default();
    set_trace(&mut h, trace);
    properties.with_headers(h)
}

fn set_trace(h: &mut FieldTable, trace: &TraceParent) {
    headers::set_text(h, TRACEPARENT, &trace.context.traceparent());
    if let Some(state) = &trace.state {
        headers::set_text(h, TRACESTATE, state);
    }
}

// ---- Replays ------------------------------------------------------------------------

/// What a replay needs of an archived dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay<'a> {
    /// The archive's id of it, for errors.
    pub id: Uuid,
    /// Its organization.
    pub org: Option<&'a str>,
    /// The subscription, when it was a task.
    pub subscription_id: Option<Uuid>,
    /// The event's id.
    pub event_id: Option<&'a str>,
    /// The event type.
    pub event_type: Option<&'a str>,
    /// The producer's bytes.
    pub body: &'a [u8],
    /// The archive kept only a prefix of the body.
    pub truncated: bool,
    /// The W3C `traceparent` it carried when it died: its replay carries it again, so
    /// that the replayed attempts join the event's trace.
    pub traceparent: Option<&'a str>,
    /// Its `tracestate`.
    pub tracestate: Option<&'a str>,
}

/// Whether an event carries [`REPLAYED`].
pub fn is_replayed(headers: Option<&FieldTable>) -> bool {
    headers::text(headers, REPLAYED) == Some("true")
}

/// Where a replayed dead letter is published, and as what.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The exchange.
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The message's properties.
    pub properties: BasicProperties,
}

impl Replay<'_> {
    /// A failed delivery goes back to the work queue as a task with a fresh retry budget;
    /// an event that never fanned out goes back to the events exchange.
    pub fn destination(&self, names: &Names) -> Result<Destination> {
        let unreplayable = |why: &str| {
            Error::Unreplayable(format!("dead letter {} cannot be replayed: {why}", self.id))
        };
        if self.truncated {
            return Err(unreplayable(
                "the archive kept only the first bytes of its body",
            ));
        }
        let event_type = self
            .event_type
            .ok_or_else(|| unreplayable("its event type is unknown"))?;
        let trace = TraceParent::from_headers(self.traceparent, self.tracestate);
        match (self.subscription_id, self.org, self.event_id) {
            (Some(subscription_id), Some(org), Some(event_id)) => {
                let task = Task::new(event_id, org, event_type, subscription_id, now_ms(), None)
                    .with_trace(trace);
                Ok(Destination {
                    exchange: names.work_exchange(),
                    routing_key: DELIVER_KEY.to_owned(),
                    properties: task.properties(),
                })
            }
            (Some(_), _, _) => Err(unreplayable("its organization or event id is missing")),
            (None, org, event_id) => {
                let mut properties = event_properties(org, event_id, None);
                let mut headers = properties.headers().clone().unwrap_or_default();
                headers::set_text(&mut headers, REPLAYED, "true");
                properties = properties.with_headers(headers);
                Ok(Destination {
                    exchange: names.events_exchange(),
                    routing_key: event_type.to_owned(),
                    properties: match &trace {
                        Some(trace) => with_trace(properties, trace),
                        None => properties,
                    },
                })
            }
        }
    }
}

mod dead;

pub use dead::*;

#[cfg(test)]
mod tests;
