//! RabbitMQ streams over AMQP 0-9-1, as replication uses them: declared with an optional
//! `x-max-age`, read from an offset with a prefetch and manual acks (which only return
//! credit), each delivery carrying its offset in the `x-stream-offset` header.
//!
//! A stream refuses `basic.nack` and `basic.reject` with a connection-level error that
//! closes every channel of the connection: a stream is read on a connection of its own,
//! and nothing here ever nacks.

use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Consumer};

use crate::Result;

/// The header that carries a delivery's offset, and the consumer argument that says where
/// to start.
pub const OFFSET_HEADER: &str = "x-stream-offset";

/// Declares the stream `name`; `max_age` becomes its `x-max-age` (whole seconds).
pub async fn declare(channel: &Channel, name: &str, max_age: Option<Duration>) -> Result<()> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("stream")),
    );
    if let Some(age) = max_age {
        args.insert(
            "x-max-age".into(),
            AMQPValue::LongString(LongString::from(format!("{}s", age.as_secs().max(1)))),
        );
    }
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await?;
    Ok(())
}

/// Consumes the stream `name` from `offset` (`None`: from its first message) on `channel`,
/// with `prefetch` unacked deliveries at most.
pub async fn consume_from(
    channel: &Channel,
    name: &str,
    offset: Option<u64>,
    prefetch: u16,
) -> Result<Consumer> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        OFFSET_HEADER.into(),
        match offset {
            None => AMQPValue::LongString(LongString::from("first")),
            Some(n) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
        },
    );
    Ok(channel
        .basic_consume(name.into(), "".into(), BasicConsumeOptions::default(), args)
        .await?)
}

/// A delivery's offset in its stream.
pub fn offset(headers: Option<&FieldTable>) -> Option<u64> {
    crate::headers::unsigned(headers, OFFSET_HEADER)
}
