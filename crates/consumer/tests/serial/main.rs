//! Tests that disturb the shared broker. `cargo test` skips this binary; `tests/run` runs
//! it alone, after the rest, with `--test serial -- --test-threads=1`. Each test closes
//! only hookwire's own connections (found by connection name) and puts the broker back
//! even when it fails.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use hookwire_amqp::Producer;
use hookwire_core::Catalog;
use hookwire_testkit::{Harness, Receiver, capture_logs, eventually, new_subscription};

const WAIT: Duration = Duration::from_secs(60);

/// Closes every broker connection of a node whose `amqp.connection_name` is `name` (each
/// is named `name@<node id>`, with what it does after); returns how many.
fn close_connections_named(name: &str) -> usize {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let marker = format!(r#"{{"connection_name","{name}@"#);
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&marker))
        .filter_map(|l| l.split('\t').next().map(str::to_owned))
        .collect();
    for pid in &pids {
        let status = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "hookwire serial test"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "close_connection {pid}");
    }
    pids.len()
}

/// Starts the broker's app again when dropped, so a failing test never leaves it stopped.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "60"])
            .status();
    }
}

fn delivered_ids(receiver: &Receiver) -> BTreeSet<String> {
    receiver
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

async fn publish_batch(producer: &Producer, from: usize, to: usize) {
    for i in from..to {
        let mut data = serde_json::Map::new();
        data.insert(
            "report_run_url".into(),
            format!("https://mode.test/runs/{i}").into(),
        );
        let event = hookwire_amqp::OutgoingEvent {
            org: "acme".into(),
            event_type: "report_run_completed".into(),
            id: format!("evt-{i}"),
            data,
        };
        producer.publish(&event).await.expect("publish confirmed");
    }
}

#[tokio::test]
async fn delivery_resumes_after_hookwire_connections_are_force_closed() {
    capture_logs();
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::start(|_, _| hookwire_testkit::Reply {
        status: 200,
        headers: vec![],
        delay: Duration::from_millis(20),
    })
    .await;
    h.subscribe(&new_subscription(
        "acme",
        &receiver.url(),
        &["report_run_completed"],
    ));
    publish_batch(&h.producer, 0, 100).await;
    receiver.wait_for(10, WAIT).await;
    let closed = close_connections_named(&h.config.amqp.connection_name);
    assert_eq!(
        closed, 1,
        "hookwire's one connection was found by name and closed"
    );
    publish_batch(&h.producer, 100, 200).await;
    eventually(
        WAIT,
        "all 200 events delivered after the reconnect",
        || async { (delivered_ids(&receiver).len() == 200).then_some(()) },
    )
    .await;
    h.wait_ready().await;
    assert!(h.dead_letters().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn delivery_resumes_after_the_broker_app_restarts() {
    capture_logs();
    let mut h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    h.subscribe(&new_subscription(
        "acme",
        &receiver.url(),
        &["report_run_completed"],
    ));
    publish_batch(&h.producer, 0, 50).await;
    receiver.wait_for(1, WAIT).await;
    {
        let _guard = RestartGuard;
        let status = Command::new("rabbitmqctl")
            .arg("stop_app")
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "stop_app");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The test's own connections died with the app; hookwire reconnects by itself.
    let producer = Producer::connect(
        &h.config.amqp.url,
        h.namespace(),
        "hookwire-test-producer",
        Catalog::builtin(),
    )
    .await
    .expect("producer reconnects");
    publish_batch(&producer, 50, 100).await;
    // This once timed out (60 s, then 240 s) when the session ended on a failed ack: lapin
    // never settled the connection close queued as the socket died, and the supervisor
    // waited on it forever. The close is now bounded (daemon.rs, CLOSE_TIMEOUT).
    eventually(
        WAIT,
        "all 100 events delivered after the restart",
        || async { (delivered_ids(&receiver).len() == 100).then_some(()) },
    )
    .await;
    h.broker = hookwire_testkit::Broker::connect().await;
    h.producer = producer;
    h.finish().await;
}
