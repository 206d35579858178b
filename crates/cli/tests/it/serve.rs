//! `hookwire serve` as a child process: SIGKILL mid-delivery, SIGTERM with requests in
//! flight, and secrets kept out of logs and store files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hookwire_amqp::topology::DELIVER_KEY;
use hookwire_amqp::{Producer, Publisher, Topology, wire};
use hookwire_core::{Config, Subscription};
use hookwire_store::{AttemptQuery, Store};
use hookwire_testkit::serve_child::seed_store;
use hookwire_testkit::{
    Broker, Receiver, Reply, ServeChild, eventually, new_subscription, test_config,
    unique_namespace,
};
use lapin::Channel;

use crate::{hookwire, write_config};

const WAIT: Duration = Duration::from_secs(60);

/// One `serve` child's world: a config file, a seeded store, a declared namespace, a
/// producer into it, and the log every `serve` of the test appends to.
struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    path: PathBuf,
    log: PathBuf,
    broker: Broker,
    topology: Topology,
    channel: Channel,
    producer: Producer,
}

impl Fixture {
    async fn new(subscriptions: &[Subscription]) -> Self {
        Self::with(subscriptions, |_| {}).await
    }

    /// [`Fixture::new`] with the test config changed by `adjust`.
    async fn with(subscriptions: &[Subscription], adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&unique_namespace(), &dir.path().join("store"));
        adjust(&mut config);
        // Not even opened without subscriptions: the secrets test looks for the files
        // that serve writes.
        if !subscriptions.is_empty() {
            seed_store(&config, subscriptions).expect("seed");
        }
        let path = write_config(&config, dir.path());
        let broker = Broker::connect().await;
        let topology = Topology::of_config(&config).expect("schedule");
        let channel = broker.connection().create_channel().await.expect("channel");
        // Declared up front, so the test can watch the queues before serve runs.
        topology.declare(&channel).await.expect("declare");
        let producer = crate::producer_for(&config).await;
        let log = dir.path().join("serve.log");
        Self {
            _dir: dir,
            config,
            path,
            log,
            broker,
            topology,
            channel,
            producer,
        }
    }

    /// Starts `serve` and waits until it consumes.
    async fn start(&self) -> ServeChild {
        self.start_with(&[]).await
    }

    /// Starts `serve` with `env` and waits until it consumes.
    async fn start_with(&self, env: &[(&str, &str)]) -> ServeChild {
        let binary = Path::new(env!("CARGO_BIN_EXE_hookwire"));
        let mut serve =
            ServeChild::spawn(binary, &self.path, &self.log, env).expect("serve starts");
        serve.wait_ready(WAIT).await.expect("serve consumes");
        serve
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
        crate::publish_runs(&self.producer, 0..count).await;
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
    let fx = Fixture::new(std::slice::from_ref(&sub)).await;
    let mut serve = fx.start().await;
    fx.wait_consumers(1).await;
    fx.publish_runs(EVENTS).await;
    receiver.wait_for(HELD, Duration::from_secs(30)).await;
    serve.kill().expect("SIGKILL, reaped");
    fx.wait_consumers(0).await;

    let mut serve = fx.start().await;
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
    let status = serve.terminate(WAIT).await.expect("serve stops");
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

/// An event's deliveries settled before a SIGKILL, while the event was held unacked by
/// another subscriber, are not made again when it is redelivered: one answered 2xx, and
/// one answered 500 whose retry was scheduled (and then delivered). The restarted `serve`
/// finds them in the settled journal (and the attempt log) and makes only the held one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_settled_before_a_sigkill_are_not_made_again() {
    const EVENTS: usize = 6;
    /// The slow receiver holds this many first requests open until the kill, so that many
    /// events stay unacked after the others have answered them.
    const HELD: usize = 3;
    let fast = Receiver::ok().await;
    let slow = Receiver::holding_first(HELD).await;
    let flaky = Receiver::failing_each_first_attempt().await;
    let subs = [&fast, &slow, &flaky]
        .map(|r| new_subscription("acme", &r.url(), &["report_run_completed"]));
    let fx = Fixture::new(&subs).await;
    let mut serve = fx.start().await;
    fx.wait_consumers(1).await;
    fx.publish_runs(EVENTS).await;
    fast.wait_for(EVENTS, Duration::from_secs(30)).await;
    slow.wait_for(EVENTS, Duration::from_secs(30)).await;
    // Each first attempt, then its retry from the tier.
    flaky.wait_for(2 * EVENTS, Duration::from_secs(30)).await;
    // Give the journal's write, and the attempt log's batch and sled's 500 ms flush, time
    // to reach the file: a SIGKILL keeps what did.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        slow.answered().len(),
        EVENTS - HELD,
        "the held requests are open"
    );
    serve.kill().expect("SIGKILL, reaped");
    fx.wait_consumers(0).await;

    let mut serve = fx.start().await;
    let api = serve.api().expect("serve's API");
    eventually(
        WAIT,
        "the held events answered after the restart",
        || async { (answered_bodies(&slow).len() == EVENTS).then_some(()) },
    )
    .await;
    assert_eq!(
        fast.requests().len(),
        EVENTS,
        "no delivery answered before the kill was made again"
    );
    assert_eq!(
        flaky.requests().len(),
        2 * EVENTS,
        "no delivery whose retry was scheduled before the kill was made again"
    );
    let metrics = reqwest::get(format!("http://{api}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let skipped: f64 = metrics
        .lines()
        .filter(|l| l.starts_with(r#"hookwire_deliveries_total{outcome="already_settled"}"#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        skipped >= 2.0 * HELD as f64,
        "each redelivered event's two settled deliveries are counted: {skipped}"
    );
    assert!(serve.terminate(WAIT).await.expect("serve stops").success());
    fx.finish().await;
}

/// A delivery whose event is redelivered and made again (here the store and its journal
/// were lost after the retry was scheduled: as after a kill between the retry's confirm
/// and its journal entry) goes on from the redelivery alone. The retry the first handling
/// left in its tier names that handling as its lineage, and is dropped when it comes back;
/// the same copy without a lineage is delivered, so the drop is the lineage's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_left_behind_by_a_redelivery_that_made_its_delivery_again_is_dropped() {
    let flaky = Receiver::failing_each_first_attempt().await;
    let sub = new_subscription("acme", &flaky.url(), &["report_run_completed"]);
    let subs = std::slice::from_ref(&sub);
    // A retry that stays in its tier until serve has been killed.
    let fx = Fixture::with(subs, |c| {
        c.delivery.retry_schedule = vec![Duration::from_secs(4)]
    })
    .await;
    let names = &fx.topology.names;
    let mut serve = fx.start().await;
    fx.wait_consumers(1).await;
    fx.publish_runs(1).await;
    flaky.wait_for(1, WAIT).await;
    let tier = names.retry_queue(Duration::from_secs(4));
    eventually(WAIT, "the retry parked", || async {
        (fx.broker.ready(&tier).await == 1).then_some(())
    })
    .await;
    // The event's ack follows its retry's confirm.
    tokio::time::sleep(Duration::from_millis(300)).await;
    serve.kill().expect("SIGKILL, reaped");
    fx.wait_consumers(0).await;
    assert_eq!(
        fx.broker.ready(&names.events_queue()).await,
        0,
        "the event was acked before the kill"
    );
    eventually(WAIT, "the retry back from its tier", || async {
        (fx.broker.ready(&names.deliveries_queue()).await == 1).then_some(())
    })
    .await;
    let (props, body) = fx.broker.drain(&names.deliveries_queue()).await.remove(0);
    let headers = props.headers().clone().expect("the retry's headers");
    assert!(
        headers.inner().contains_key(wire::LINEAGE),
        "the retry names the handling that published it: {headers:?}"
    );
    // The event again, redelivered, to a node that knows nothing of its delivery.
    fx.publish_runs(1).await;
    assert_eq!(fx.broker.return_unacked(&names.events_queue()).await, 1);
    std::fs::remove_dir_all(&fx.config.store.path).expect("store removed");
    seed_store(&fx.config, subs).expect("seed");

    let mut serve = fx.start().await;
    flaky.wait_for(2, WAIT).await;
    let mut without = headers.inner().clone();
    without.retain(|key, _| key.as_str() != wire::LINEAGE);
    let without = lapin::types::FieldTable::from(without);
    let publisher = Publisher::open(fx.broker.connection(), WAIT)
        .await
        .expect("confirm channel");
    for h in [headers, without] {
        publisher
            .publish(
                &names.work_exchange(),
                DELIVER_KEY,
                &body,
                props.clone().with_headers(h),
            )
            .await
            .expect("task published");
    }
    flaky.wait_for(3, WAIT).await;
    let api = serve.api().expect("serve's API");
    eventually(
        WAIT,
        "the left-behind retry counted as superseded",
        || async {
            let metrics = reqwest::get(format!("http://{api}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            metrics
                .contains(r#"hookwire_deliveries_total{outcome="superseded"} 1"#)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        flaky.requests().len(),
        3,
        "the first attempt, the redelivery's, and the copy without a lineage"
    );
    assert!(serve.terminate(WAIT).await.expect("serve stops").success());
    fx.finish().await;
}

/// A created webhook's secret reaches neither the store's files (it is sealed) nor the
/// logs, even at TRACE level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs_or_the_store_files() {
    let fx = Fixture::new(&[]).await;
    let mut serve = fx
        .start_with(&[("RUST_LOG", "trace"), ("HOOKWIRE_LOG__FORMAT", "json")])
        .await;
    let api = format!(
        "http://{}",
        serve.api().expect("serve logged its API address")
    );
    let log_path = serve.log().to_owned();
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
    assert!(serve.terminate(WAIT).await.expect("serve stops").success());

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
    let fx = Fixture::new(std::slice::from_ref(&sub)).await;
    let mut serve = fx.start().await;
    fx.wait_consumers(1).await;
    fx.publish_runs(TOTAL).await;
    // The default per-webhook cap (8) is in flight; the rest wait in the deferral tier.
    receiver.wait_for(8, Duration::from_secs(30)).await;
    let in_flight = receiver.requests().len();
    let stopping = Instant::now();
    let status = serve.terminate(WAIT).await.expect("serve stops");
    let elapsed = stopping.elapsed();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let grace = fx.config.delivery.shutdown_grace;
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

    let mut serve = fx.start().await;
    eventually(WAIT, "every event answered after the restart", || async {
        (answered_bodies(&receiver).len() == TOTAL).then_some(())
    })
    .await;
    let answered = receiver.answered();
    let ids: BTreeSet<&str> = answered.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), answered.len(), "no delivery was answered twice");
    assert!(serve.terminate(WAIT).await.expect("serve stops").success());
    fx.finish().await;
}
