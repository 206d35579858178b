//! Turning a message of the dead queue into an archived [`DeadLetter`].
//!
//! hookwire's own dead letters carry `x-hookwire-reason`. Messages the broker
//! dead-lettered itself (a crash loop reaching `x-delivery-limit`) carry only the
//! broker's `x-death` header, from which the reason is derived.

use hookwire_amqp::headers;
use hookwire_core::event::{ORG_HEADER, is_valid_org};
use hookwire_core::{DeadReason, now_ms};
use hookwire_store::DeadLetter;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use uuid::Uuid;

use crate::task::{ATTEMPTS, DETAIL, EVENT_ID, EVENT_TYPE, REASON, SUBSCRIPTION_ID};

/// The archive record of one dead message.
pub fn archive_record(delivery: &Delivery) -> DeadLetter {
    let h = delivery.properties.headers().as_ref();
    let death = first_death(h);
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
        .or_else(|| Some(delivery.routing_key.to_string()).filter(|k| k != "dead"));
    DeadLetter {
        id: Uuid::now_v7(),
        org: headers::text(h, ORG_HEADER)
            .filter(|o| is_valid_org(o))
            .map(str::to_owned),
        subscription_id: headers::text(h, SUBSCRIPTION_ID).and_then(|s| Uuid::parse_str(s).ok()),
        event_id: headers::text(h, EVENT_ID).map(str::to_owned).or_else(|| {
            delivery
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
        dead_at_ms: now_ms(),
        body: delivery.data.clone(),
    }
}

/// The most recent `x-death` entry (the broker puts it first).
fn first_death(h: Option<&FieldTable>) -> Option<&FieldTable> {
    match h?.inner().get("x-death")? {
        AMQPValue::FieldArray(entries) => entries.as_slice().iter().find_map(|e| match e {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn broker_reason(death: Option<&FieldTable>) -> (String, String) {
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

fn death_routing_key(death: &FieldTable) -> Option<String> {
    match death.inner().get("routing-keys")? {
        AMQPValue::FieldArray(keys) => keys.as_slice().iter().find_map(|k| match k {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
            _ => None,
        }),
        _ => None,
    }
}
