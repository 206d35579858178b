//! Several `serve` nodes on one namespace, each with its own data directory and API port,
//! the store replicated through the namespace's changes stream.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hookwire_amqp::{Producer, Topology};
use hookwire_core::{Catalog, Config};
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{
    Broker, Receiver, Reply, ServeChild, eventually, test_config, unique_namespace,
};
use lapin::Channel;
use serde_json::{Value, json};

use crate::write_config;

mod redelivery;

const WAIT: Duration = Duration::from_secs(60);

/// The nodes' world: one namespace, and per node a config (its own store, API port and
/// node id) and a log.
struct Cluster {
    dir: tempfile::TempDir,
    namespace: String,
    channel: Channel,
    topology: Topology,
    producer: Producer,
    broker: Broker,
    http: reqwest::Client,
}

/// One running node.
struct Node {
    serve: ServeChild,
    api: SocketAddr,
    store: PathBuf,
    config: PathBuf,
}

impl Cluster {
    async fn new() -> Self {
        let namespace = unique_namespace();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Self::config_of(&namespace, dir.path(), 1);
        let broker = Broker::connect().await;
        let topology = Topology::of_config(&config).expect("schedule");
        let channel = broker.connection().create_channel().await.expect("channel");
        topology.declare(&channel).await.expect("declare");
        let producer = Producer::connect(
            &config.amqp.url,
            &namespace,
            "hookwire-test-producer",
            Catalog::builtin(),
        )
        .await
        .expect("producer");
        Self {
            dir,
            namespace,
            channel,
            topology,
            producer,
            broker,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    fn config_of(namespace: &str, dir: &Path, n: usize) -> Config {
        let mut config = test_config(namespace, &dir.join(format!("node-{n}")).join("store"));
        config.node.id = format!("node-{n}");
        config.replication.enabled = true;
        config.replication.health_interval = Duration::from_secs(1);
        config
    }

    /// Starts node `n` (1-based) and waits until it is ready: caught up with the changes
    /// stream, and consuming.
    async fn start(&self, n: usize) -> Node {
        self.start_with(n, &[]).await
    }

    /// [`Cluster::start`] with `env` (`HOOKWIRE_…` settings) added to the node's.
    async fn start_with(&self, n: usize, env: &[(&str, &str)]) -> Node {
        let (config, path) = self.write_config(n);
        let node_dir = self.dir.path().join(format!("node-{n}"));
        let binary = Path::new(env!("CARGO_BIN_EXE_hookwire"));
        let mut serve = ServeChild::spawn(binary, &path, &node_dir.join("serve.log"), env)
            .expect("serve starts");
        let api = serve.wait_ready(WAIT).await.expect("serve is ready");
        Node {
            serve,
            api,
            store: config.store.path,
            config: path,
        }
    }

    /// Node `n`'s config, written to its directory.
    fn write_config(&self, n: usize) -> (Config, PathBuf) {
        let config = Self::config_of(&self.namespace, self.dir.path(), n);
        let node_dir = self.dir.path().join(format!("node-{n}"));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let path = write_config(&config, &node_dir);
        (config, path)
    }

    async fn request(
        &self,
        node: &Node,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<u64>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", node.api))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(version) = if_match {
            request = request.header("If-Match", format!("\"{version}\""));
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, node: &Node, path: &str) -> Value {
        let (status, body) = self
            .request(node, reqwest::Method::GET, path, None, None)
            .await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The webhooks of `acme` as `node` answers, without what each node judges alone (its
    /// circuit and health counters).
    async fn webhooks(&self, node: &Node) -> Vec<Value> {
        let list = self.get(node, "/v1/orgs/acme/webhooks").await;
        list["webhooks"]
            .as_array()
            .expect("a list")
            .iter()
            .map(shared_fields)
            .collect()
    }

    async fn dead_letters(&self, node: &Node) -> Value {
        self.get(node, "/v1/orgs/acme/dead-letters").await["dead_letters"].clone()
    }

    async fn create(&self, node: &Node, url: &str, verify: bool) -> Value {
        let (status, body) = self
            .request(
                node,
                reqwest::Method::POST,
                &format!("/v1/orgs/acme/webhooks?verify={verify}"),
                Some(json!({"url": url, "description": "cluster", "events": ["report_run_completed"]})),
                None,
            )
            .await;
        assert_eq!(status, 201, "create: {body}");
        body
    }

    async fn publish_runs(&self, from: usize, to: usize) {
        crate::publish_runs(&self.producer, from..to).await;
    }

    /// The sum of the samples of `node`'s `/metrics` whose line `matches`.
    async fn metric(&self, node: &Node, matches: impl Fn(&str) -> bool) -> f64 {
        let response = self
            .http
            .get(format!("http://{}/metrics", node.api))
            .send()
            .await
            .expect("the API answers");
        let text = response.text().await.expect("metrics");
        text.lines()
            .filter(|l| matches(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Deliveries `node` made since it started (`hookwire_deliveries_total`, delivered).
    async fn delivered_by(&self, node: &Node) -> f64 {
        self.metric(node, |l| {
            l.starts_with("hookwire_deliveries_total{") && l.contains("outcome=\"delivered\"")
        })
        .await
    }

    /// Attempts `node` has in flight right now (`hookwire_deliveries_in_flight`).
    async fn in_flight(&self, node: &Node) -> f64 {
        self.metric(node, |l| l.starts_with("hookwire_deliveries_in_flight "))
            .await
    }

    /// Every page of webhook `id`'s attempts on `node`, `limit` at a time, cursors included.
    async fn attempt_pages(&self, node: &Node, id: &str, limit: usize) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .get(
                    node,
                    &format!("/v1/orgs/acme/webhooks/{id}/attempts?limit={limit}{cursor}"),
                )
                .await;
            let next = page["next_cursor"].as_str().map(|c| format!("&cursor={c}"));
            pages.push(page);
            match next {
                Some(next) => cursor = next,
                None => return pages,
            }
        }
    }

    /// The attempts of each webhook of `hooks`, once every node of `nodes` lists them
    /// alike and has stopped listing more.
    async fn same_attempts(&self, nodes: &[&Node], hooks: &[String]) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            let mut answers = Vec::new();
            for node in nodes {
                let mut lists = Vec::new();
                for hook in hooks {
                    let path = format!("/v1/orgs/acme/webhooks/{hook}/attempts?limit=500");
                    lists.push(self.get(node, &path).await["attempts"].clone());
                }
                answers.push(lists);
            }
            let alike = answers.windows(2).all(|w| w[0] == w[1]);
            // The same answer half a second apart: the stream has been applied, not
            // caught halfway.
            if alike && last.as_ref() == answers.first() {
                return answers.swap_remove(0);
            }
            assert!(
                Instant::now() < deadline,
                "the nodes list different attempts after {WAIT:?}: {answers:?}"
            );
            last = alike.then(|| answers.swap_remove(0));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The attempts stream read from its first batch through the one at `last`: how many
    /// batches, records and bytes of message body it holds.
    async fn attempts_stream(&self, last: u64) -> (usize, usize, usize) {
        use futures_util::StreamExt;
        let channel = self
            .broker
            .connection()
            .create_channel()
            .await
            .expect("channel");
        let name = self.topology.names.attempts_stream();
        let secrets_key = Self::config_of(&self.namespace, self.dir.path(), 1)
            .secrets_key()
            .expect("a key");
        let key = hookwire_amqp::envelope::StreamKey::derive(&secrets_key);
        let mut consumer = hookwire_amqp::stream::consume_from(&channel, &name, None, 64)
            .await
            .expect("consume the attempts stream");
        let (mut batches, mut records, mut bytes) = (0, 0, 0);
        loop {
            let delivery = tokio::time::timeout(WAIT, consumer.next())
                .await
                .expect("the attempts stream delivers")
                .expect("a delivery")
                .expect("a delivery");
            let offset = hookwire_amqp::stream::offset(delivery.properties.headers().as_ref())
                .expect("an offset");
            batches += 1;
            bytes += delivery.data.len();
            let opened = key.open(&name, &delivery.data).expect("a sealed batch");
            records += hookwire_store::AttemptRecord::decode_batch(opened.body)
                .expect("a batch")
                .len();
            delivery
                .acker
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .expect("ack");
            if offset >= last {
                channel.close(200, "read".into()).await.expect("close");
                return (batches, records, bytes);
            }
        }
    }

    /// The offset of the last attempts-stream batch `node` applied, from `/readyz`.
    async fn attempts_applied_offset(&self, node: &Node) -> u64 {
        let readyz = self.get(node, "/readyz").await;
        readyz["replication"]["attempts_applied_offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("an attempts offset: {readyz}"))
    }

    /// The frame size of each broker connection of node `n`, by what the connection does
    /// (`changes reader`, `payloads writer`, …; the delivery connection's is empty).
    fn frame_sizes(&self, n: usize) -> Vec<(String, u32)> {
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "-q",
                "--no-table-headers",
                "frame_max",
                "client_properties",
            ])
            .output()
            .expect("rabbitmqctl runs");
        let marker = format!(
            r#"{{"connection_name","hookwire-{}@node-{n}"#,
            self.namespace
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (frame_max, properties) = line.split_once('\t')?;
                let after = &properties[properties.find(&marker)? + marker.len()..];
                let role = after[..after.find('"')?].trim().to_owned();
                Some((role, frame_max.trim().parse().ok()?))
            })
            .collect()
    }

    async fn finish(self, nodes: Vec<Node>) {
        for mut node in nodes {
            let status = node.serve.terminate(WAIT).await.expect("serve stops");
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
        }
        self.producer.close().await.expect("close");
        self.topology.delete(&self.channel).await.expect("cleanup");
    }
}

/// A webhook's fields that every node holds alike.
fn shared_fields(webhook: &Value) -> Value {
    let mut webhook = webhook.clone();
    if let Some(fields) = webhook.as_object_mut() {
        for local in [
            "circuit",
            "consecutive_failures",
            "failing_since",
            "last_success_at",
        ] {
            fields.remove(local);
        }
    }
    webhook
}

/// A node started after the others rebuilds their store from the stream; a webhook
/// created on one node is listed by another; a dead letter archived by node 2 is replayed
/// through node 1 and leaves every node; concurrent updates through two nodes leave one
/// winner, one 409 and one state everywhere; deliveries are shared; a node whose data
/// directory is wiped answers like the others once restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_the_store_and_share_the_deliveries() {
    const EVENTS: usize = 150;
    let cluster = Cluster::new().await;
    // Its first answer is 400 (permanent: dead-lettered at once), then 200.
    let flaky = Receiver::start(|n, _| Reply::status(if n == 0 { 400 } else { 200 })).await;
    let good = Receiver::ok().await;

    // Node 2 alone archives the dead letter.
    let node2 = cluster.start(2).await;
    let flaky_hook = cluster.create(&node2, &flaky.url(), false).await;
    cluster.publish_runs(0, 1).await;
    eventually(WAIT, "node 2 archives the dead letter", || async {
        (cluster
            .dead_letters(&node2)
            .await
            .as_array()
            .map_or(0, Vec::len)
            == 1)
            .then_some(())
    })
    .await;

    // The stream connections carry only hookwire's own entries and ask for small frames,
    // which keeps lapin's buffers small; the delivery connection, which takes what
    // producers publish, keeps the broker's frame size.
    let sizes = eventually(
        WAIT,
        "node 2's stream readers and writers connect",
        || async {
            let sizes = cluster.frame_sizes(2);
            let streams = sizes
                .iter()
                .filter(|(role, _)| role.ends_with("reader") || role.ends_with("writer"));
            (streams.count() >= 4).then_some(sizes)
        },
    )
    .await;
    for (role, frame_max) in &sizes {
        if role.ends_with("reader") || role.ends_with("writer") {
            assert_eq!(*frame_max, 16 * 1024, "{role}: {sizes:?}");
        } else if role.is_empty() {
            assert_eq!(*frame_max, 128 * 1024, "the delivery connection: {sizes:?}");
        }
    }
    assert!(sizes.iter().any(|(role, _)| role.is_empty()), "{sizes:?}");

    // Nodes 1 and 3 start with empty data directories and rebuild from the stream.
    let node1 = cluster.start(1).await;
    let node3 = cluster.start(3).await;
    let expected = cluster.webhooks(&node2).await;
    assert_eq!(expected.len(), 1);
    for node in [&node1, &node3] {
        assert_eq!(cluster.webhooks(node).await, expected, "rebuilt webhooks");
        assert_eq!(
            cluster.dead_letters(node).await,
            cluster.dead_letters(&node2).await,
            "rebuilt dead letters"
        );
    }

    // Created through node 1, listed by node 3: the propagation bound.
    let started = Instant::now();
    let created = cluster.create(&node1, &good.url(), true).await;
    let answered = started.elapsed();
    let id = created["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "node 3 lists the new webhook", || async {
        cluster
            .webhooks(&node3)
            .await
            .iter()
            .any(|w| w["id"] == id.as_str())
            .then_some(())
    })
    .await;
    let listed = started.elapsed();
    eprintln!(
        "propagation: create answered by node 1 after {answered:?}, listed by node 3 after {listed:?}"
    );
    assert!(
        listed < Duration::from_secs(5),
        "listed by node 3 within 5 s: {listed:?}"
    );

    // The dead letter archived by node 2, replayed through node 1: gone everywhere.
    let (status, replayed) = cluster
        .request(
            &node1,
            reqwest::Method::POST,
            "/v1/orgs/acme/dead-letters/replay",
            Some(json!({"webhook_id": flaky_hook["id"]})),
            None,
        )
        .await;
    assert_eq!(status, 200, "replay: {replayed}");
    assert_eq!(
        replayed["replayed"].as_array().map(Vec::len),
        Some(1),
        "{replayed}"
    );
    for node in [&node1, &node2, &node3] {
        eventually(
            WAIT,
            "the replayed dead letter leaves every node",
            || async {
                (cluster
                    .dead_letters(node)
                    .await
                    .as_array()
                    .map_or(0, Vec::len)
                    == 0)
                    .then_some(())
            },
        )
        .await;
    }
    flaky.wait_for(2, WAIT).await;

    // The same webhook updated through two nodes at once, over the version both read.
    let path = format!("/v1/orgs/acme/webhooks/{id}");
    let version = created["version"].as_u64().expect("version");
    let (one, two) = tokio::join!(
        cluster.request(
            &node1,
            reqwest::Method::PATCH,
            &path,
            Some(json!({"description": "by node 1"})),
            Some(version)
        ),
        cluster.request(
            &node2,
            reqwest::Method::PATCH,
            &path,
            Some(json!({"description": "by node 2"})),
            Some(version)
        ),
    );
    let mut statuses = [one.0, two.0];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 409],
        "one winner, one conflict: {one:?} {two:?}"
    );
    let winner = if one.0 == 200 { &one.1 } else { &two.1 };
    for node in [&node1, &node2, &node3] {
        eventually(WAIT, "every node holds the winner's write", || async {
            let webhook = shared_fields(&cluster.get(node, &path).await);
            (webhook == shared_fields(winner)).then_some(())
        })
        .await;
    }

    // Deliveries are made by more than one node, and none is lost.
    cluster.publish_runs(1, 1 + EVENTS).await;
    eventually(
        WAIT,
        "every event delivered to the good receiver",
        || async {
            let bodies: BTreeSet<Vec<u8>> = good
                .answered()
                .iter()
                .filter(|r| !r.body.starts_with(b"{\"event\":\"webhook_test\""))
                .map(|r| r.body.to_vec())
                .collect();
            (bodies.len() == EVENTS).then_some(())
        },
    )
    .await;
    let mut delivering = 0;
    for node in [&node1, &node2, &node3] {
        let delivered = cluster.delivered_by(node).await;
        eprintln!("{} delivered {delivered}", node.api);
        delivering += usize::from(delivered > 0.0);
    }
    assert!(delivering >= 2, "deliveries made by {delivering} node(s)");

    // Every node's attempts reach every node's attempt log through the attempts stream.
    let hooks = [
        id.clone(),
        flaky_hook["id"].as_str().expect("id").to_owned(),
    ];
    let expected = cluster
        .same_attempts(&[&node1, &node2, &node3], &hooks)
        .await;
    let good_attempts = expected[0].as_array().expect("a list");
    assert!(
        good_attempts.len() >= EVENTS,
        "{} attempts listed for {EVENTS} events",
        good_attempts.len()
    );
    let distinct: BTreeSet<(String, u64)> = good_attempts
        .iter()
        .map(|a| {
            (
                a["message_id"].as_str().expect("message id").to_owned(),
                a["attempt"].as_u64().expect("attempt"),
            )
        })
        .collect();
    assert_eq!(
        distinct.len(),
        good_attempts.len(),
        "no attempt listed twice"
    );
    let flaky_attempts = expected[1].as_array().expect("a list");
    assert!(
        flaky_attempts.iter().any(|a| a["outcome"] == "permanent"),
        "the 400 of the dead-lettered delivery is listed: {flaky_attempts:?}"
    );

    // The stream holds exactly the attempts listed, each once.
    let applied = cluster.attempts_applied_offset(&node1).await;
    let (batches, records, bytes) = cluster.attempts_stream(applied).await;
    let listed = good_attempts.len() + flaky_attempts.len();
    assert_eq!(records, listed, "the attempts stream's records");
    eprintln!(
        "attempts stream: {records} records in {batches} batches, {bytes} bytes of message body, {:.0} bytes per record",
        bytes as f64 / records as f64
    );

    // Node 2 restarted: it reads the attempts stream again after the batch it applied
    // last, and lists nothing twice.
    let applied = cluster.attempts_applied_offset(&node2).await;
    let mut node2 = node2;
    let status = node2.serve.terminate(WAIT).await.expect("node 2 stops");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let node2 = cluster.start(2).await;
    let resumed_at = format!("Some({})", applied + 1);
    eventually(WAIT, "node 2 resumes the attempts stream", || async {
        node2
            .serve
            .own_log()
            .lines()
            .any(|l| l.contains("Reading the attempts stream.") && l.contains(&resumed_at))
            .then_some(())
    })
    .await;
    assert_eq!(
        cluster.same_attempts(&[&node1, &node2], &hooks).await,
        expected,
        "node 2 lists the same attempts after its restart"
    );

    // Node 3's data directory wiped: once restarted, it answers like the others, its
    // attempt log rebuilt from the attempts stream.
    let mut node3 = node3;
    node3.serve.kill().expect("SIGKILL node 3");
    std::fs::remove_dir_all(&node3.store).expect("wipe node 3's store");
    let node3 = cluster.start(3).await;
    let expected_hooks = cluster.webhooks(&node1).await;
    assert_eq!(expected_hooks.len(), 2);
    assert_eq!(
        cluster.webhooks(&node3).await,
        expected_hooks,
        "rebuilt webhooks"
    );
    assert_eq!(
        cluster.dead_letters(&node3).await,
        cluster.dead_letters(&node1).await,
        "rebuilt dead letters"
    );
    assert_eq!(
        cluster
            .same_attempts(&[&node1, &node2, &node3], &hooks)
            .await,
        expected,
        "rebuilt attempts"
    );
    for hook in &hooks {
        assert_eq!(
            cluster.attempt_pages(&node3, hook, 7).await,
            cluster.attempt_pages(&node1, hook, 7).await,
            "the same pages and cursors"
        );
    }
    let readyz = cluster.get(&node3, "/readyz").await;
    assert_eq!(readyz["replication"]["caught_up"], true, "{readyz}");
    assert_eq!(readyz["replication"]["node"], "node-3", "{readyz}");
    assert_eq!(
        readyz["replication"]["attempts_applied_offset"],
        cluster.get(&node1, "/readyz").await["replication"]["attempts_applied_offset"],
        "{readyz}"
    );
    cluster.finish(vec![node1, node2, node3]).await;
}

/// SIGKILL one of three nodes in the middle of 3,000 events to two webhooks, while it has
/// attempts in flight: every event reaches both receivers, and the duplicates the kill
/// caused are at most the requests open at the kill (hookwire could not know their
/// outcome) and a thousandth of the deliveries (answered in the kill's last moments,
/// before their record reached the other nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_nothing() {
    const EVENTS: usize = 3000;
    let cluster = Cluster::new().await;
    // Each answer takes 50 ms, so that the node killed holds attempts open at the kill.
    let slow = || {
        Receiver::start(|_, _| Reply {
            delay: Duration::from_millis(50),
            ..Reply::status(200)
        })
    };
    let (one, two) = (slow().await, slow().await);
    let node1 = cluster.start(1).await;
    cluster.create(&node1, &one.url(), false).await;
    cluster.create(&node1, &two.url(), false).await;
    let mut node2 = cluster.start(2).await;
    let node3 = cluster.start(3).await;
    cluster.publish_runs(0, EVENTS / 2).await;
    // Mid-way, while node 2 has attempts in flight: a kill of an idle node would prove
    // nothing.
    one.wait_for(EVENTS / 4, WAIT).await;
    let held = eventually(WAIT, "node 2 with attempts in flight", || async {
        let n = cluster.in_flight(&node2).await;
        (n > 0.0).then_some(n)
    })
    .await;
    let killed_at = Instant::now();
    node2.serve.kill().expect("SIGKILL node 2");
    let reaped_at = Instant::now();
    cluster.publish_runs(EVENTS / 2, EVENTS).await;
    let distinct = |r: &Receiver| {
        r.answered()
            .iter()
            .map(|r| r.body.to_vec())
            .collect::<BTreeSet<_>>()
            .len()
    };
    eventually(
        Duration::from_secs(180),
        "every event at both receivers",
        || async { (distinct(&one) == EVENTS && distinct(&two) == EVENTS).then_some(()) },
    )
    .await;
    let duplicates = one.answered().len() + two.answered().len() - 2 * EVENTS;
    let open = one.open_during(killed_at, reaped_at) + two.open_during(killed_at, reaped_at);
    let allowed = open + (2 * EVENTS).div_ceil(1000);
    eprintln!(
        "SIGKILL of one node among three, {held} attempts in flight on it: {duplicates} duplicate deliveries of {}; {open} requests open at the kill",
        2 * EVENTS
    );
    assert!(
        duplicates <= allowed,
        "{duplicates} duplicates, more than the {open} requests open at the kill and a thousandth of the deliveries"
    );
    drop(node2);
    cluster.finish(vec![node1, node3]).await;
}

/// Runs the `hookwire` binary with `args`; its exit status and standard error.
async fn run_hookwire(args: Vec<String>) -> (bool, String) {
    let output = hookwire_output(args).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs the CLI off the test's runtime threads, and returns all it did.
async fn hookwire_output(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        crate::hookwire()
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .expect("join")
    .expect("hookwire runs")
}

/// A namespace's store exported from its stopped node and imported into a fresh
/// namespace: the new namespace's node answers alike; a second import is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_into_a_fresh_namespace_answers_alike() {
    let source = Cluster::new().await;
    let (good, refusing) = (
        Receiver::ok().await,
        Receiver::start(|_, _| Reply::status(400)).await,
    );
    let mut node = source.start(1).await;
    source.create(&node, &good.url(), true).await;
    source.create(&node, &refusing.url(), false).await;
    source.publish_runs(0, 1).await;
    eventually(WAIT, "a dead letter archived", || async {
        (source
            .dead_letters(&node)
            .await
            .as_array()
            .map_or(0, Vec::len)
            == 1)
            .then_some(())
    })
    .await;
    let (webhooks, dead) = (
        source.webhooks(&node).await,
        source.dead_letters(&node).await,
    );
    assert!(node.serve.terminate(WAIT).await.expect("stops").success());

    let export = source.dir.path().join("export.jsonl");
    let config = node.config.display().to_string();
    let (ok, stderr) = run_hookwire(vec![
        "store".into(),
        "export".into(),
        "--config".into(),
        config,
        "--out".into(),
        export.display().to_string(),
    ])
    .await;
    assert!(ok, "export: {stderr}");
    assert!(
        stderr.contains("exported 2 webhook(s) and 1 dead letter(s)"),
        "{stderr}"
    );

    let target = Cluster::new().await;
    let (_, target_config) = target.write_config(1);
    let import = vec![
        "store".into(),
        "import".into(),
        "--config".into(),
        target_config.display().to_string(),
        "--in".into(),
        export.display().to_string(),
    ];
    let mut import_json = import.clone();
    import_json.push("--json".into());
    let output = hookwire_output(import_json).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "import: {stderr}");
    let summary: Value = serde_json::from_slice(&output.stdout).expect("one JSON summary");
    assert_eq!(
        summary,
        serde_json::json!({
            "imported": 3,
            "stream": format!("{}.changes", target.namespace),
            "namespace": target.namespace,
        }),
        "two webhooks and a dead letter"
    );
    let imported = target.start(1).await;
    assert_eq!(target.webhooks(&imported).await, webhooks);
    assert_eq!(target.dead_letters(&imported).await, dead);

    // The namespace holds changes now: another import is refused, with the reason.
    let (ok, stderr) = run_hookwire(import).await;
    assert!(!ok, "a second import is refused");
    assert!(stderr.contains("already holds changes"), "{stderr}");
    target.finish(vec![imported]).await;
    source.finish(Vec::new()).await;
}

/// What `store import` refuses before it publishes anything: input that is not an
/// export, and an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_something_else_is_refused_with_the_reason() {
    let target = Cluster::new().await;
    let (_, config) = target.write_config(1);
    let cases = [
        (
            "not json\n",
            "line 1: not an entry of `hookwire store export`",
        ),
        (
            "{\"op\":\"upsert\"}\n",
            "line 1: not an entry of `hookwire store export`",
        ),
        ("\n", "nothing to import"),
    ];
    for (text, expected) in cases {
        let input = target.dir.path().join("input.jsonl");
        std::fs::write(&input, text).expect("write");
        let (ok, stderr) = run_hookwire(vec![
            "store".into(),
            "import".into(),
            "--config".into(),
            config.display().to_string(),
            "--in".into(),
            input.display().to_string(),
        ])
        .await;
        assert!(!ok, "{text:?} is refused");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
    target.finish(Vec::new()).await;
}

/// A webhook's failing state as `node` answers: (`failing_since`, `last_success_at`).
async fn health_on(cluster: &Cluster, node: &Node, id: &str) -> (Value, Value) {
    let webhook = cluster
        .get(node, &format!("/v1/orgs/acme/webhooks/{id}"))
        .await;
    (
        webhook["failing_since"].clone(),
        webhook["last_success_at"].clone(),
    )
}

/// A webhook that starts failing on whichever node delivers shows as failing on every
/// node, and as recovered on every node once a delivery succeeds: transitions travel the
/// changes stream (`replication.health_interval`), not every attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_transitions_reach_every_node() {
    let cluster = Cluster::new().await;
    let failing = Arc::new(AtomicBool::new(true));
    let receiver = Receiver::start({
        let failing = failing.clone();
        move |_, _| {
            if failing.load(Ordering::SeqCst) {
                Reply::status(500)
            } else {
                Reply::status(200)
            }
        }
    })
    .await;
    let (node1, node2) = (cluster.start(1).await, cluster.start(2).await);
    let created = cluster.create(&node1, &receiver.url(), false).await;
    let id = created["id"].as_str().expect("an id").to_owned();
    eventually(WAIT, "node 2 holds the webhook", || async {
        (cluster.webhooks(&node2).await.len() == 1).then_some(())
    })
    .await;

    cluster.publish_runs(0, 1).await;
    for node in [&node1, &node2] {
        eventually(WAIT, "the webhook failing on every node", || async {
            let (since, _) = health_on(&cluster, node, &id).await;
            since.is_string().then_some(())
        })
        .await;
    }
    let (since1, _) = health_on(&cluster, &node1, &id).await;
    let (since2, _) = health_on(&cluster, &node2, &id).await;
    assert_eq!(since1, since2, "one failing_since on every node");

    failing.store(false, Ordering::SeqCst);
    cluster.publish_runs(1, 2).await;
    for node in [&node1, &node2] {
        eventually(WAIT, "the webhook recovered on every node", || async {
            let (since, last_success) = health_on(&cluster, node, &id).await;
            (since.is_null() && last_success.is_string()).then_some(())
        })
        .await;
    }
    cluster.finish(vec![node1, node2]).await;
}

/// An event consumed by node 2 alone is resent through node 1, which started afterwards
/// with an empty data directory: node 1 keeps the body from the payloads stream. The
/// receiver gets it again with the original `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_consumed_by_one_node_is_resent_through_another() {
    let cluster = Cluster::new().await;
    let receiver = Receiver::ok().await;
    let node2 = cluster.start(2).await;
    let hook = cluster.create(&node2, &receiver.url(), false).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    cluster.publish_runs(0, 1).await;
    let original = receiver.wait_for(1, WAIT).await;

    let node1 = cluster.start(1).await;
    let path = format!("/v1/orgs/acme/webhooks/{id}/resend");
    let resent = eventually(WAIT, "node 1 to resend evt-0", || async {
        let (status, body) = cluster
            .request(
                &node1,
                reqwest::Method::POST,
                &path,
                Some(json!({"event_id": "evt-0"})),
                None,
            )
            .await;
        // 404 until node 1 has read the body from the payloads stream.
        (status != 404).then_some((status, body))
    })
    .await;
    assert_eq!(resent.0, 200, "{}", resent.1);
    assert_eq!(
        resent.1["queued"][0]["message_id"],
        original[0].header("webhook-id")
    );
    let all = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        all[1].header("webhook-id"),
        original[0].header("webhook-id")
    );
    assert_eq!(all[1].body, original[0].body);
    cluster.finish(vec![node1, node2]).await;
}
