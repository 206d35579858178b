//! Turning a message of the dead queue into an archived [`DeadLetter`].

use hookwire_amqp::wire::DeadMessage;
use hookwire_core::now_ms;
use hookwire_store::DeadLetter;
use lapin::message::Delivery;
use uuid::Uuid;

/// The archive record of one dead message: at most `max_body` bytes of its body, with
/// its whole size, so that an over-size message never fills the archive.
pub fn archive_record(message: &Delivery, max_body: usize) -> DeadLetter {
    let DeadMessage {
        org,
        subscription_id,
        event_id,
        event_type,
        reason,
        detail,
        attempts,
        body_bytes,
        trace,
        transformed,
    } = DeadMessage::read(message);
    let kept = &message.data[..message.data.len().min(max_body)];
    DeadLetter {
        id: Uuid::now_v7(),
        org,
        subscription_id,
        event_id,
        event_type,
        reason,
        detail,
        attempts,
        dead_at_ms: now_ms(),
        body: kept.to_vec(),
        body_bytes,
        truncated: (kept.len() as u64) < body_bytes,
        traceparent: trace.as_ref().map(|t| t.context.traceparent()),
        tracestate: trace.and_then(|t| t.state),
        transformed,
    }
}
