//! RabbitMQ streams over AMQP 0-9-1, as replication uses them: declared with an optional
//! `x-max-age`, read from an offset with a prefetch and manual acks (which only return
//! credit), each delivery carrying its offset in the `x-stream-offset` header.
//!
//! A stream refuses `basic.nack` and `basic.reject` with a connection-level error that
//! closes every channel of the connection: a stream is read on a connection of its own,
//! and nothing here ever nacks.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Consumer};

pub use crate::inequivalent::Difference;
use crate::{Result, inequivalent};

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
    bounded_arguments(max_age, None, replicas)
}

/// [`arguments`], and `max_bytes` as its `x-max-length-bytes`: past it RabbitMQ drops
/// the oldest segments, so that no producer can fill the broker's disk through it.
pub fn bounded_arguments(
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
    replicas: Option<u8>,
) -> FieldTable {
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
    if let Some(bytes) = max_bytes {
        args.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(i64::try_from(bytes).unwrap_or(i64::MAX)),
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

/// How a stream's declaration went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// The stream exists with the arguments asked for.
    AsAsked,
    /// The stream exists with other arguments, which RabbitMQ fixes when it creates a
    /// stream; it is used as it is. Every argument that differs, with both values.
    AsFound(Vec<Difference>),
}

/// How many differing arguments one declaration may find: more than a stream has.
const MAX_DIFFERENCES: usize = 8;

/// Declares the stream `name` with `args` on channels of its own. A stream that exists
/// with other arguments (a retention or size changed in the configuration, or a stream
/// made by an older build) is used as it is: RabbitMQ refuses the declaration with 406,
/// naming the first argument that differs, and closes the channel; the stream is then
/// declared again on another channel with that argument as the broker holds it, until
/// the declaration matches, so that every difference is known. Any other refusal (a
/// queue of another type or durability by that name) is an error. Changing a stream's
/// arguments is the operator's choice (docs/operations.md).
pub async fn declare_on(
    connection: &lapin::Connection,
    name: &str,
    args: FieldTable,
) -> Result<Declared> {
    let mut args = args.inner().clone();
    let mut differences = Vec::new();
    loop {
        let channel = connection.create_channel().await?;
        let refused = match declare_with(&channel, name, args.clone().into()).await {
            Ok(()) => {
                let _ = channel.close(200, "declared".into()).await;
                return Ok(if differences.is_empty() {
                    Declared::AsAsked
                } else {
                    Declared::AsFound(differences)
                });
            }
            Err(crate::Error::Amqp(e)) => e,
            Err(e) => return Err(e),
        };
        match adopt(&mut args, &refused) {
            Some(difference) if differences.len() < MAX_DIFFERENCES => {
                differences.push(difference);
            }
            _ => return Err(refused.into()),
        }
    }
}

/// Sets in `args` the value the broker holds of the argument a 406 names, and returns
/// that difference; `None` when `refused` is not such a refusal, or names the queue's
/// type or a property (`durable`): a queue that is not a durable stream is not used.
fn adopt(
    args: &mut BTreeMap<ShortString, AMQPValue>,
    refused: &lapin::Error,
) -> Option<Difference> {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    let lapin::ErrorKind::ProtocolError(amqp) = refused.kind() else {
        return None;
    };
    if *amqp.kind() != AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) {
        return None;
    }
    let found = inequivalent::parse(amqp.get_message().as_str())?;
    if !found.argument.starts_with("x-") || found.argument == "x-queue-type" {
        return None;
    }
    let asked = args
        .iter()
        .find(|(key, _)| key.as_str() == found.argument)
        .map(|(_, value)| value.clone());
    let current = match &found.current {
        Some(current) => Some(current.to_amqp(asked.as_ref())?),
        None => None,
    };
    args.retain(|key, _| key.as_str() != found.argument);
    if let Some(current) = current {
        args.insert(found.argument.clone().into(), current);
    }
    Some(found.difference())
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
