//! `hookwire serve` as a child process: killed with SIGKILL mid-delivery and restarted,
//! every delivery still arrives.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use hookwire_core::{Catalog, Config};
use hookwire_producer::{Producer, Topology};
use hookwire_store::{Change, Store};
use hookwire_testkit::{
    Broker, Receiver, Reply, eventually, new_subscription, test_config, unique_namespace,
};

use crate::{hookwire, write_config};

const EVENTS: usize = 20;
/// The receiver holds this many first requests open (never answering them) until the kill.
const HELD: usize = 4;

/// A `serve` child that is killed if the test fails, so no daemon outlives its test.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_serve(config_path: &std::path::Path) -> Serve {
    Serve(
        hookwire()
            .args(["serve", "--config"])
            .arg(config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve starts"),
    )
}

async fn wait_consuming(broker: &Broker, config: &Config, n: u32) {
    let queue = format!("{}.events", config.amqp.namespace);
    eventually(
        Duration::from_secs(30),
        &format!("{n} consumer(s) on {queue}"),
        || async { (broker.consumers(&queue).await == n).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn sigkill_mid_delivery_then_restart_delivers_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(&unique_namespace(), &dir.path().join("store"));
    // The first requests hang long enough for the kill to land while they are open.
    let receiver = Receiver::start(|n, _| Reply {
        status: 200,
        headers: vec![],
        delay: if n < HELD {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        },
    })
    .await;
    let sub = new_subscription("acme", &receiver.url(), &["report_run_completed"]);
    {
        // sled locks its directory: seed it, then close it before serve opens it.
        let store = Store::open(
            &config.store.path,
            1 << 20,
            &config.secrets_key().expect("key"),
        )
        .expect("store");
        store.apply(Change::Upsert(sub.clone())).expect("seed");
        store.flush().expect("flush");
    }
    let path = write_config(&config, dir.path());
    let broker = Broker::connect().await;
    let topology = Topology::new(
        &config.amqp.namespace,
        config
            .retry_schedule()
            .expect("schedule")
            .tiers()
            .into_iter()
            .chain([config.delivery.defer_delay]),
    );
    let channel = broker.connection().create_channel().await.expect("channel");
    topology.declare(&channel).await.expect("declare");
    let mut serve = spawn_serve(&path);
    wait_consuming(&broker, &config, 1).await;

    let producer = Producer::connect(
        &config.amqp.url,
        &config.amqp.namespace,
        "hookwire-test-producer",
        Catalog::builtin(),
    )
    .await
    .expect("producer");
    for i in 0..EVENTS {
        let mut data = serde_json::Map::new();
        data.insert(
            "report_run_url".into(),
            format!("https://mode.test/runs/{i}").into(),
        );
        let event = hookwire_producer::OutgoingEvent {
            org: "acme".into(),
            event_type: "report_run_completed".into(),
            id: format!("evt-{i}"),
            data,
        };
        producer.publish(&event).await.expect("publish");
    }
    receiver.wait_for(HELD, Duration::from_secs(30)).await;
    serve.0.kill().expect("SIGKILL");
    serve.0.wait().expect("reaped");
    wait_consuming(&broker, &config, 0).await;

    let mut serve = spawn_serve(&path);
    // Only answered requests count: the held ones never got their 200.
    let bodies = |receiver: &Receiver| {
        receiver
            .requests()
            .iter()
            .skip(HELD)
            .map(|r| r.body.clone())
            .collect::<BTreeSet<_>>()
    };
    eventually(
        Duration::from_secs(60),
        "every event delivered after the restart",
        || async { (bodies(&receiver).len() == EVENTS).then_some(()) },
    )
    .await;
    let ids: BTreeSet<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        EVENTS,
        "redeliveries keep their webhook-id, so receivers can drop duplicates"
    );

    // SIGTERM is a graceful stop: exit 0.
    let pid = serve.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = serve.0.wait().expect("serve exits");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let store = Store::open(
        &config.store.path,
        1 << 20,
        &config.secrets_key().expect("key"),
    )
    .expect("store reopens");
    assert!(
        store.all_dead_letters().expect("dead letters").is_empty(),
        "nothing dead-lettered"
    );

    producer.close().await.expect("close");
    topology.delete(&channel).await.expect("cleanup");
}

/// A created webhook's secret reaches neither the store's files (it is sealed) nor the
/// logs, even at TRACE level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs_or_the_store_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(&unique_namespace(), &dir.path().join("store"));
    let path = write_config(&config, dir.path());
    let broker = Broker::connect().await;
    let topology = Topology::new(
        &config.amqp.namespace,
        config
            .retry_schedule()
            .expect("schedule")
            .tiers()
            .into_iter()
            .chain([config.delivery.defer_delay]),
    );
    let channel = broker.connection().create_channel().await.expect("channel");
    topology.declare(&channel).await.expect("declare");
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut serve = Serve(
        hookwire()
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "trace")
            .env("HOOKWIRE_LOG__FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("serve starts"),
    );
    let api = eventually(
        Duration::from_secs(30),
        "serve to log its API address",
        || async {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|l| l["fields"]["api"].as_str().map(|a| format!("http://{a}")))
        },
    )
    .await;
    wait_consuming(&broker, &config, 1).await;

    let receiver = Receiver::ok().await;
    let create = {
        let mut cmd = hookwire();
        cmd.args([
            "webhooks",
            "create",
            "--org",
            "acme",
            "--url",
            &receiver.url(),
            "--events",
            "report_created",
            "--json",
        ])
        .args([
            "--api",
            &api,
            "--token",
            hookwire_testkit::harness::API_TOKEN,
        ])
        .stdin(Stdio::null());
        tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("cli runs")
    };
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&create.stdout).expect("JSON");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let producer = Producer::connect(
        &config.amqp.url,
        &config.amqp.namespace,
        "hookwire-test-producer",
        Catalog::builtin(),
    )
    .await
    .expect("producer");
    let mut data = serde_json::Map::new();
    data.insert("report_run_url".into(), "https://mode.test/r".into());
    producer
        .publish(&hookwire_producer::OutgoingEvent {
            org: "acme".into(),
            event_type: "report_created".into(),
            id: "e1".into(),
            data,
        })
        .await
        .expect("publish");
    receiver.wait_for(2, Duration::from_secs(30)).await;
    let pid = serve.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    assert!(serve.0.wait().expect("exit").success());

    let encoded = secret.trim_start_matches("whsec_");
    let logs = std::fs::read(&log_path).expect("logs");
    assert!(
        logs.len() > 10_000,
        "TRACE logging was on ({} bytes)",
        logs.len()
    );
    let mut files = vec![log_path.clone()];
    let mut dirs = vec![config.store.path.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            if entry.path().is_dir() {
                dirs.push(entry.path())
            } else {
                files.push(entry.path())
            }
        }
    }
    assert!(files.len() > 2, "the store wrote files: {files:?}");
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !bytes
                .windows(encoded.len())
                .any(|w| w == encoded.as_bytes()),
            "the secret is in {}",
            file.display()
        );
    }
    producer.close().await.expect("close");
    topology.delete(&channel).await.expect("cleanup");
}

/// SIGTERM while slow receivers hold requests: the attempts in flight finish, `serve`
/// exits 0 within its grace, nothing goes back to the events queue, and after a restart
/// every event is delivered exactly once (no duplicate `webhook-id` among the answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_deliveries_and_loses_nothing() {
    const TOTAL: usize = 12;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(&unique_namespace(), &dir.path().join("store"));
    let receiver = Receiver::start(|_, _| Reply {
        status: 200,
        headers: vec![],
        delay: Duration::from_secs(2),
    })
    .await;
    let sub = new_subscription("acme", &receiver.url(), &["report_run_completed"]);
    {
        let store = Store::open(
            &config.store.path,
            1 << 20,
            &config.secrets_key().expect("key"),
        )
        .expect("store");
        store.apply(Change::Upsert(sub.clone())).expect("seed");
        store.flush().expect("flush");
    }
    let path = write_config(&config, dir.path());
    let broker = Broker::connect().await;
    let topology = Topology::new(
        &config.amqp.namespace,
        config
            .retry_schedule()
            .expect("schedule")
            .tiers()
            .into_iter()
            .chain([config.delivery.defer_delay]),
    );
    let channel = broker.connection().create_channel().await.expect("channel");
    topology.declare(&channel).await.expect("declare");
    let mut serve = spawn_serve(&path);
    wait_consuming(&broker, &config, 1).await;
    let producer = Producer::connect(
        &config.amqp.url,
        &config.amqp.namespace,
        "hookwire-test-producer",
        Catalog::builtin(),
    )
    .await
    .expect("producer");
    for i in 0..TOTAL {
        let mut data = serde_json::Map::new();
        data.insert(
            "report_run_url".into(),
            format!("https://mode.test/runs/{i}").into(),
        );
        let event = hookwire_producer::OutgoingEvent {
            org: "acme".into(),
            event_type: "report_run_completed".into(),
            id: format!("evt-{i}"),
            data,
        };
        producer.publish(&event).await.expect("publish");
    }
    // The default per-webhook cap (8) is in flight; the rest wait in the deferral tier.
    receiver.wait_for(8, Duration::from_secs(30)).await;
    let in_flight = receiver.requests().len();
    let pid = serve.0.id().to_string();
    let stopping = std::time::Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = serve.0.wait().expect("serve exits");
        (status, serve)
    })
    .await
    .expect("join");
    let elapsed = stopping.elapsed();
    assert!(
        status.0.success(),
        "graceful shutdown exits 0, got {}",
        status.0
    );
    let grace = Duration::from_secs(config.delivery.shutdown_grace_secs);
    assert!(
        elapsed < grace + Duration::from_secs(5),
        "exited within the grace ({elapsed:?})"
    );
    assert!(
        receiver.answered().len() >= in_flight,
        "every request in flight at SIGTERM was answered before exit"
    );
    let events = format!("{}.events", config.amqp.namespace);
    assert_eq!(
        broker.ready(&events).await,
        0,
        "no event went back to the events queue"
    );

    let store = Store::open(
        &config.store.path,
        1 << 20,
        &config.secrets_key().expect("key"),
    )
    .expect("store reopens");
    let logged = store
        .attempts(
            &sub.id,
            &hookwire_store::AttemptQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .expect("attempts");
    assert!(
        logged.items.len() >= in_flight,
        "the attempt log was written out before exit: {}",
        logged.items.len()
    );
    drop(store);

    let mut serve = spawn_serve(&path);
    let bodies = |r: &Receiver| {
        r.answered()
            .iter()
            .map(|q| q.body.clone())
            .collect::<BTreeSet<_>>()
    };
    eventually(
        Duration::from_secs(60),
        "every event answered after the restart",
        || async { (bodies(&receiver).len() == TOTAL).then_some(()) },
    )
    .await;
    let answered = receiver.answered();
    let ids: BTreeSet<&str> = answered.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), answered.len(), "no delivery was answered twice");
    let pid = serve.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    assert!(serve.0.wait().expect("exit").success());
    producer.close().await.expect("close");
    topology.delete(&channel).await.expect("cleanup");
}
