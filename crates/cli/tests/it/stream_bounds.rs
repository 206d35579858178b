//! The payloads and attempts streams are bounded by bytes as well as by age; a stream
//! made with other bounds (by an older build, or before the configuration changed) does
//! not keep a node from starting: it is used as it is; and a policy shortens a live
//! stream's retention.

use std::time::Duration;

use futures_util::StreamExt;
use hookwire_amqp::lapin::options::{BasicAckOptions, QueueDeclareOptions, QueueDeleteOptions};
use hookwire_amqp::lapin::types::{AMQPValue, FieldTable};
use hookwire_amqp::stream;
use hookwire_testkit::receiver::Reply;
use hookwire_testkit::{Harness, Receiver, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Declares `name` with `args` on a channel of its own: `Ok` when the broker holds the
/// stream with exactly these arguments, the broker's refusal otherwise.
async fn declare(h: &Harness, name: &str, args: FieldTable, passive: bool) -> Result<(), String> {
    let channel = h
        .broker
        .connection()
        .create_channel()
        .await
        .expect("channel");
    let options = QueueDeclareOptions {
        durable: true,
        passive,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(name.into(), options, args)
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    let _ = channel.close(200, "checked".into()).await;
    declared
}

/// Deletes the stream `name`, as an operator would to make it anew.
async fn delete(h: &Harness, name: &str) {
    let channel = h
        .broker
        .connection()
        .create_channel()
        .await
        .expect("channel");
    channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let _ = channel.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_replicated_node_bounds_its_streams_by_bytes() {
    let h = Harness::start(|c| {
        c.replication.enabled = true;
        c.store.payload_max_bytes = 3 << 30;
        c.replication.attempts_max_bytes = 5 << 28;
    })
    .await;
    let streams = [
        ("payloads", h.config.store.payload_retention, 3 << 30),
        ("attempts", h.config.store.attempt_retention, 5 << 28),
    ];
    for (kind, age, bytes) in streams {
        let name = format!("{}.{kind}", h.namespace());
        eventually(WAIT, &format!("{name} to be declared"), || async {
            declare(&h, &name, FieldTable::default(), true).await.ok()
        })
        .await;
        let refused = declare(&h, &name, stream::arguments(Some(age), None), false)
            .await
            .expect_err("the stream carries x-max-length-bytes");
        assert!(refused.contains("x-max-length-bytes"), "{refused}");
        declare(
            &h,
            &name,
            stream::bounded_arguments(Some(age), Some(bytes), None),
            false,
        )
        .await
        .unwrap_or_else(|e| panic!("{name} is bounded by {bytes} bytes: {e}"));
    }
    h.finish().await;
}

#[tokio::test]
async fn a_stream_made_with_other_bounds_is_used_as_it_is() {
    let mut h = Harness::start(|c| c.replication.enabled = true).await;
    h.stop_daemon().await.expect("hookwire stops");
    // The changes stream was made whole; the configuration now asks for a year. The
    // restart below waits for readiness, which needs the changes stream read.
    h.config.replication.changes_max_age = Some(Duration::from_secs(365 * 86_400));
    // The attempts stream as an older build made it: another age, no byte bound.
    let name = format!("{}.attempts", h.namespace());
    let old = || stream::arguments(Some(Duration::from_secs(86_400)), None);
    delete(&h, &name).await;
    declare(&h, &name, old(), false).await.expect("old stream");

    h.restart_daemon().await;
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    h.subscribe_acme(&receiver.url());
    h.publish_report("evt-bounds-1", "https://example.com/r/1")
        .await;
    receiver.wait_for(1, WAIT).await;
    // The attempt went out through the old stream and came back: the node uses it.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let ready_url = format!("{}/readyz", h.api_url());
    eventually(WAIT, "the attempt to come back from the stream", || async {
        let health: serde_json::Value =
            http.get(&ready_url).send().await.ok()?.json().await.ok()?;
        health["replication"]["attempts_applied_offset"]
            .as_u64()
            .map(drop)
    })
    .await;
    declare(&h, &name, old(), false)
        .await
        .expect("the stream keeps the arguments it was made with");
    let changes = format!("{}.changes", h.namespace());
    declare(&h, &changes, stream::arguments(None, None), false)
        .await
        .expect("the changes stream keeps the arguments it was made with");
    h.finish().await;
}

/// The first offset a consumer of `name` from its start is given.
async fn first_offset(h: &Harness, name: &str) -> Option<u64> {
    let channel = h.broker.connection().create_channel().await.ok()?;
    let mut consumer = stream::consume_from(&channel, name, None, 1).await.ok()?;
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .ok()??
        .ok()?;
    let offset = stream::offset(delivery.properties.headers().as_ref());
    let _ = delivery.ack(BasicAckOptions::default()).await;
    let _ = channel.close(200, "read".into()).await;
    offset
}

/// A RabbitMQ policy on the vhost, cleared when dropped (also when the test fails).
struct Policy(String);

impl Policy {
    fn set(name: String, pattern: &str, definition: &str) -> Self {
        rabbitmqctl(&[
            "set_policy",
            &name,
            pattern,
            definition,
            "--apply-to",
            "queues",
        ]);
        Self(name)
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        rabbitmqctl(&["clear_policy", &self.0]);
    }
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (the broker's own CLI, installed with rabbitmq-server)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docs/operations.md, "Changing a stream's bounds": a policy shortens a live stream's
/// retention without recreating it, and the node keeps running on it.
#[tokio::test]
async fn a_policy_shortens_a_live_streams_retention() {
    let mut h = Harness::start(|c| c.replication.enabled = true).await;
    h.stop_daemon().await.expect("hookwire stops");
    // The attempts stream as hookwire makes it, but in segments of 2 KiB instead of
    // 500 MB, so that RabbitMQ applies retention (segment by segment) within the test.
    let name = format!("{}.attempts", h.namespace());
    delete(&h, &name).await;
    let mut args = stream::bounded_arguments(
        Some(h.config.store.attempt_retention),
        Some(h.config.replication.attempts_max_bytes),
        None,
    );
    args.insert(
        "x-stream-max-segment-size-bytes".into(),
        AMQPValue::LongLongInt(2048),
    );
    declare(&h, &name, args, false).await.expect("the stream");
    h.restart_daemon().await;

    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let sub = h.subscribe_acme(&receiver.url());
    let publish = |from: usize| {
        let h = &h;
        async move {
            for i in from..from + 20 {
                h.publish_report(&format!("evt-policy-{i}"), "https://example.com/r/1")
                    .await;
            }
        }
    };
    publish(0).await;
    receiver.wait_for(20, WAIT).await;
    assert_eq!(
        first_offset(&h, &name).await,
        Some(0),
        "nothing dropped yet"
    );

    let _policy = Policy::set(
        format!("{}-retention", h.namespace()),
        &format!("^{}$", regex_escape(&name)),
        r#"{"max-age":"1s"}"#,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // RabbitMQ applies retention when a segment is closed: the next records close some.
    publish(20).await;
    receiver.wait_for(40, WAIT).await;
    eventually(WAIT, "the oldest segments to be dropped", || async {
        first_offset(&h, &name).await.filter(|&first| first > 0)
    })
    .await;
    // The stream is bounded anew; the node's own log keeps what it holds, and it stays
    // ready on the stream as it now is.
    h.wait_attempts(&sub.id, 40, WAIT).await;
    h.wait_ready().await;
    h.finish().await;
}

fn regex_escape(name: &str) -> String {
    name.replace('.', "\\.")
}

/// docs/operations.md, "Changing a stream's bounds": a longer retention needs the stream
/// made anew. With every node stopped, `rabbitmqctl delete_queue` removes it; the node
/// started with the longer retention declares it with exactly the new bounds, and its
/// attempts go through it again.
#[tokio::test]
async fn a_stream_deleted_while_its_nodes_are_stopped_is_made_anew_with_longer_bounds() {
    const DAY: Duration = Duration::from_secs(86_400);
    let mut h = Harness::start(|c| {
        c.replication.enabled = true;
        c.store.attempt_retention = DAY;
    })
    .await;
    let name = format!("{}.attempts", h.namespace());
    let bounds = |h: &Harness| {
        stream::bounded_arguments(
            Some(h.config.store.attempt_retention),
            Some(h.config.replication.attempts_max_bytes),
            None,
        )
    };
    declare(&h, &name, bounds(&h), false)
        .await
        .expect("made with a day");
    h.stop_daemon().await.expect("hookwire stops");
    rabbitmqctl(&["delete_queue", &name]);
    h.config.store.attempt_retention = 14 * DAY;
    h.restart_daemon().await;

    declare(&h, &name, bounds(&h), false)
        .await
        .expect("made anew with fourteen days");
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let sub = h.subscribe_acme(&receiver.url());
    h.publish_report("evt-longer-1", "https://example.com/r/1")
        .await;
    receiver.wait_for(1, WAIT).await;
    h.wait_attempts(&sub.id, 1, WAIT).await;
    eventually(WAIT, "the attempt in the new stream", || async {
        first_offset(&h, &name).await
    })
    .await;
    h.finish().await;
}
