//! `hookwire serve` as a child process: SIGKILL mid-delivery, SIGTERM with requests in
//! flight, and secrets kept out of logs and store files.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hookwire_amqp::{OutgoingEvent, Producer, Topology};
use hookwire_core::{Catalog, Config, Subscription};
use hookwire_store::{AttemptQuery, Change, Store};
use hookwire_testkit::{
    Broker, Receiver, Reply, eventually, new_subscription, test_config, unique_namespace,
};
use lapin::Channel;

use crate::{hookwire, write_config};

const WAIT: Duration = Duration::from_secs(60);

/// A `serve` child that is killed if the test fails, so no daemon outlives its test.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Serve {
    /// SIGTERM, then the exit status, waited for off the runtime.
    async fn terminate(mut self) -> ExitStatus {
        let pid = self.0.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
        tokio::task::spawn_blocking(move || self.0.wait().expect("serve exits"))
            .await
            .expect("join")
    }
}

/// One `serve` child's world: a config file, a seeded store, a declared namespace and a
/// producer into it.
struct Fixture {
    dir: tempfile::TempDir,
    config: Config,
    path: PathBuf,
    broker: Broker,
    topology: Topology,
    channel: Channel,
    producer: Producer,
}

impl Fixture {
    async fn new(subscriptions: &[&Subscription]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(&unique_namespace(), &dir.path().join("store"));
        if !subscriptions.is_empty() {
            // sled locks its directory: seed it, then close it before serve opens it.
            let store = open_store(&config);
            for sub in subscriptions {
                store.apply(Change::Upsert((*sub).clone())).expect("seed");
            }
            store.flush().expect("flush");
        }
        let path = write_config(&config, dir.path());
        let broker = Broker::connect().await;
        let topology = Topology::of_config(&config).expect("schedule");
        let channel = broker.connection().create_channel().await.expect("channel");
        // Declared up front, so the test can watch the queues before serve runs.
        topology.declare(&channel).await.expect("declare");
        let producer = Producer::connect(
            &config.amqp.url,
            &config.amqp.namespace,
            "hookwire-test-producer",
            Catalog::builtin(),
        )
        .await
        .expect("producer");
        Self {
            dir,
            config,
            path,
            broker,
            topology,
            channel,
            producer,
        }
    }

    fn spawn(&self) -> Serve {
        self.spawn_logging_to(Stdio::inherit(), &[])
    }

    fn spawn_logging_to(&self, stderr: impl Into<Stdio>, env: &[(&str, &str)]) -> Serve {
        Serve(
            hookwire()
                .args(["serve", "--config"])
                .arg(&self.path)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("serve starts"),
        )
    }

    async fn wait_consumers(&self, n: u32) {
        let queue = format!("{}.events", self.config.amqp.namespace);
        eventually(
            Duration::from_secs(30),
            &format!("{n} consumer(s) on {queue}"),
            || async { (self.broker.consumers(&queue).await == n).then_some(()) },
        )
        .await;
    }

    /// Publishes `report_run_completed` events `evt-{i}`, each with its own URL.
    async fn publish_runs(&self, count: usize) {
        for i in 0..count {
            let data = serde_json::from_value(
                serde_json::json!({"report_run_url": format!("https://mode.test/runs/{i}")}),
            )
            .expect("a map");
            let event = OutgoingEvent {
                org: "acme".into(),
                event_type: "report_run_completed".into(),
                id: format!("evt-{i}"),
                data,
            };
            self.producer.publish(&event).await.expect("publish");
        }
    }

    async fn finish(self) {
        self.producer.close().await.expect("close");
        self.topology.delete(&self.channel).await.expect("cleanup");
    }
}

fn open_store(config: &Config) -> Store {
    Store::open(
        &config.store.path,
        1 << 20,
        &config.secrets_key().expect("key"),
    )
    .expect("store opens")
}

fn answered_bodies(receiver: &Receiver) -> BTreeSet<Vec<u8>> {
    receiver
        .answered()
        .iter()
        .map(|r| r.body.to_vec())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_then_restart_delivers_everything() {
    const EVENTS: usize = 20;
    /// The receiver holds this many first requests open (never answering them) until the kill.
    const HELD: usize = 4;
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
    let fx = Fixture::new(&[&sub]).await;
    let mut serve = fx.spawn();
    fx.wait_consumers(1).await;
    fx.publish_runs(EVENTS).await;
    receiver.wait_for(HELD, Duration::from_secs(30)).await;
    serve.0.kill().expect("SIGKILL");
    serve.0.wait().expect("reaped");
    fx.wait_consumers(0).await;

    let serve = fx.spawn();
    eventually(WAIT, "every event answered after the restart", || async {
        (answered_bodies(&receiver).len() == EVENTS).then_some(())
    })
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
    let status = serve.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(
        open_store(&fx.config)
            .all_dead_letters()
            .expect("dead letters")
            .is_empty(),
        "nothing dead-lettered"
    );
    fx.finish().await;
}

/// A created webhook's secret reaches neither the store's files (it is sealed) nor the
/// logs, even at TRACE level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs_or_the_store_files() {
    let fx = Fixture::new(&[]).await;
    let log_path = fx.dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let serve = fx.spawn_logging_to(
        log,
        &[("RUST_LOG", "trace"), ("HOOKWIRE_LOG__FORMAT", "json")],
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
    fx.wait_consumers(1).await;

    let receiver = Receiver::ok().await;
    let mut cmd = hookwire();
    cmd.args([
        "webhooks",
        "create",
        "--org",
        "acme",
        "--url",
        &receiver.url(),
        "--events",
        "report_run_completed",
        "--json",
    ])
    .args([
        "--api",
        &api,
        "--token",
        hookwire_testkit::harness::API_TOKEN,
    ])
    .stdin(Stdio::null());
    let create = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("cli runs");
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&create.stdout).expect("JSON");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    fx.publish_runs(1).await;
    receiver.wait_for(2, Duration::from_secs(30)).await;
    assert!(serve.terminate().await.success());

    let encoded = secret.trim_start_matches("whsec_");
    let logs = std::fs::read(&log_path).expect("logs");
    assert!(
        logs.len() > 10_000,
        "TRACE logging was on ({} bytes)",
        logs.len()
    );
    let mut files = vec![log_path.clone()];
    let mut dirs = vec![fx.config.store.path.clone()];
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
    fx.finish().await;
}

/// SIGTERM while slow receivers hold requests: the attempts in flight finish, `serve`
/// exits 0 within its grace, nothing goes back to the events queue, and after a restart
/// every event is delivered exactly once (no duplicate `webhook-id` among the answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_deliveries_and_loses_nothing() {
    const TOTAL: usize = 12;
    let receiver = Receiver::start(|_, _| Reply {
        status: 200,
        headers: vec![],
        delay: Duration::from_secs(2),
    })
    .await;
    let sub = new_subscription("acme", &receiver.url(), &["report_run_completed"]);
    let fx = Fixture::new(&[&sub]).await;
    let serve = fx.spawn();
    fx.wait_consumers(1).await;
    fx.publish_runs(TOTAL).await;
    // The default per-webhook cap (8) is in flight; the rest wait in the deferral tier.
    receiver.wait_for(8, Duration::from_secs(30)).await;
    let in_flight = receiver.requests().len();
    let stopping = Instant::now();
    let status = serve.terminate().await;
    let elapsed = stopping.elapsed();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let grace = Duration::from_secs(fx.config.delivery.shutdown_grace_secs);
    assert!(
        elapsed < grace + Duration::from_secs(5),
        "exited within the grace ({elapsed:?})"
    );
    assert!(
        receiver.answered().len() >= in_flight,
        "every request in flight at SIGTERM was answered before exit"
    );
    let events = format!("{}.events", fx.config.amqp.namespace);
    assert_eq!(
        fx.broker.ready(&events).await,
        0,
        "no event went back to the events queue"
    );
    let logged = open_store(&fx.config)
        .attempts(
            &sub.id,
            &AttemptQuery {
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

    let serve = fx.spawn();
    eventually(WAIT, "every event answered after the restart", || async {
        (answered_bodies(&receiver).len() == TOTAL).then_some(())
    })
    .await;
    let answered = receiver.answered();
    let ids: BTreeSet<&str> = answered.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), answered.len(), "no delivery was answered twice");
    assert!(serve.terminate().await.success());
    fx.finish().await;
}
