//! Turning a message of the dead queue into an archived [`DeadLetter`].

use hookwire_amqp::wire::DeadMessage;
use hookwire_core::now_ms;
use hookwire_store::DeadLetter;
use lapin::message::Delivery;
use uuid::Uuid;

/// The archive record of one dead message.
pub fn archive_record(message: &Delivery) -> DeadLetter {
    let DeadMessage {
        org,
        subscription_id,
        event_id,
        event_type,
        reason,
        detail,
        attempts,
    } = DeadMessage::read(message);
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
        body: message.data.clone(),
    }
}
