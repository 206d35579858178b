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
/// Where a new queue's or stream's leader goes: to the node with the fewest leaders
/// (RabbitMQ 3.10 accepts `client-local` and `balanced`). The topology's quorum queues
/// use it too.
pub const LEADER_LOCATOR: &str = "balanced";

/// A stream's arguments: `max_age` becomes its `x-max-age` (whole seconds); `replicas`,
/// on a cluster, its `x-initial-cluster-size`, with leaders spread over the nodes.
pub fn arguments(max_age: Option<Duration>, replicas: Option<u8>) -> FieldTable {
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
    if let Some(replicas) = replicas {
        args.insert(
            "x-initial-cluster-size".into(),
            AMQPValue::LongInt(i32::from(replicas)),
        );
        args.insert(
            "x-queue-leader-locator".into(),
            AMQPValue::LongString(LongString::from(LEADER_LOCATOR)),
        );
    }
    args
}

/// Declares the stream `name` with `args` (see [`arguments`]).
pub async fn declare_with(channel: &Channel, name: &str, args: FieldTable) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_set_the_initial_cluster_size_and_spread_leaders() {
        let single = arguments(Some(Duration::from_secs(90)), None);
        assert_eq!(single.inner().get("x-initial-cluster-size"), None);
        assert_eq!(
            single.inner().get("x-max-age"),
            Some(&AMQPValue::LongString(LongString::from("90s")))
        );
        let cluster = arguments(None, Some(3));
        assert_eq!(
            cluster.inner().get("x-initial-cluster-size"),
            Some(&AMQPValue::LongInt(3))
        );
        assert_eq!(
            cluster.inner().get("x-queue-leader-locator"),
            Some(&AMQPValue::LongString(LongString::from("balanced")))
        );
        assert_eq!(cluster.inner().get("x-max-age"), None);
    }
}
