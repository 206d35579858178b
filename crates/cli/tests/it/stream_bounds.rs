//! The payloads and attempts streams are bounded by bytes as well as by age, and a stream
//! made with other bounds (by an older build, or before the configuration changed) does
//! not keep a node from starting: it is used as it is.

use std::time::Duration;

use hookwire_amqp::lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use hookwire_amqp::lapin::types::FieldTable;
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
    // The attempts stream as an older build made it: another age, no byte bound.
    let name = format!("{}.attempts", h.namespace());
    let old = || stream::arguments(Some(Duration::from_secs(86_400)), None);
    let channel = h
        .broker
        .connection()
        .create_channel()
        .await
        .expect("channel");
    channel
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let _ = channel.close(200, "done".into()).await;
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
    h.finish().await;
}
