//! High availability on a real three-node RabbitMQ cluster of the test's own: `serve`
//! and the producer given the three nodes' URLs keep delivering while the node leading
//! the events queue is down.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hookwire_amqp::{Brokers, OutgoingEvent, Producer};
use hookwire_core::Catalog;
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{RabbitCluster, Receiver, ServeChild, eventually, test_config};
use serde_json::json;

/// AMQP ports 5691–5693: apart from the system broker and from the chaos scenario's.
const PORT_BASE: u16 = 5690;
const EVENTS: usize = 600;
const WAIT: Duration = Duration::from_secs(120);

/// Publishes events `from..to`, each until the producer reports it confirmed: a publish
/// the producer reports failed (every node tried) is published again, and counted.
async fn publish(producer: &Producer, from: usize, to: usize) -> usize {
    let mut reported = 0;
    for i in from..to {
        let event = OutgoingEvent {
            org: "acme".into(),
            event_type: "report_run_completed".into(),
            id: format!("evt-{i}"),
            data: serde_json::from_value(
                json!({"report_run_url": format!("https://mode.test/runs/{i}")}),
            )
            .expect("a map"),
        };
        while let Err(e) = producer.publish(&event).await {
            eprintln!("publish of evt-{i} reported failed, published again: {e}");
            reported += 1;
        }
    }
    reported
}

/// The node (1 … 3) that holds the connection named `name` (its client-given name),
/// found by the server port it is connected to.
fn node_of(cluster: &RabbitCluster, name: &str) -> u16 {
    let listed = cluster
        .ctl(
            2,
            &[
                "list_connections",
                "client_properties",
                "port",
                "--no-table-headers",
            ],
        )
        .expect("list_connections");
    let quoted = format!("{name}\"");
    let port: u16 = listed
        .lines()
        .filter(|l| l.contains(&quoted))
        .find_map(|l| l.rsplit('\t').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connection named {name}: {listed}"));
    port - PORT_BASE
}

/// Deliveries per distinct body.
fn ledger(receiver: &Receiver) -> BTreeMap<Vec<u8>, usize> {
    let mut seen = BTreeMap::new();
    for r in receiver.answered() {
        *seen.entry(r.body.to_vec()).or_insert(0) += 1;
    }
    seen
}

/// The node leading the events queue stopped mid-stream and started again, then the node
/// `serve` consumes from: every event reaches both receivers (duplicates are counted, not
/// refused), every queue has a member on each node, `serve` opened sessions on more than
/// one node and is ready again at the end. Prints how long after each stop began the
/// first event published during the stop was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_delivering_while_the_events_queue_leader_is_down() {
    let cluster = tokio::task::spawn_blocking(|| RabbitCluster::start(PORT_BASE))
        .await
        .expect("join")
        .expect("the RabbitMQ cluster starts");
    let namespace = hookwire_testkit::unique_namespace();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(&namespace, &dir.path().join("store"));
    config.amqp.set_broker_urls(cluster.urls());
    config.amqp.confirm_timeout = Duration::from_secs(10);
    config.replication.enabled = true;
    config.node.id = "ha-1".into();
    let path = write_config(&config, dir.path());
    let binary = Path::new(env!("CARGO_BIN_EXE_hookwire"));
    let mut serve =
        ServeChild::spawn(binary, &path, &dir.path().join("serve.log"), &[]).expect("serve starts");
    let api = serve.wait_ready(WAIT).await.expect("serve is ready");

    let (one, two) = (Receiver::ok().await, Receiver::ok().await);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    for receiver in [&one, &two] {
        let created = http
            .post(format!("http://{api}/v1/orgs/acme/webhooks?verify=false"))
            .bearer_auth(API_TOKEN)
            .json(&json!({"url": receiver.url(), "events": ["report_run_completed"]}))
            .send()
            .await
            .expect("the API answers");
        assert_eq!(created.status().as_u16(), 201, "{:?}", created.text().await);
    }

    // Every queue and the changes stream have a member on each node.
    let events_queue = format!("{namespace}.events");
    let members = cluster
        .ctl(1, &["list_queues", "name", "members", "--no-table-headers"])
        .expect("list_queues");
    let ours: Vec<&str> = members
        .lines()
        .filter(|l| l.starts_with(&format!("{namespace}.")))
        .collect();
    assert!(ours.len() >= 5, "{members}");
    for line in &ours {
        assert_eq!(
            line.matches("@localhost").count(),
            3,
            "three members: {line}"
        );
    }

    let producer = Producer::connect_any(
        Brokers::new(cluster.urls()),
        &namespace,
        "hookwire-ha-producer",
        Catalog::builtin(),
    )
    .await
    .expect("producer");
    // Five batches: before, during the first stop, after it, during the second, after.
    let batch = EVENTS / 5;
    let mut reported = publish(&producer, 0, batch).await;
    one.wait_for(batch / 2, WAIT).await;
    let mut resumed = Vec::new();
    let session = format!("{}@ha-1", config.amqp.connection_name);
    for round in 0..2 {
        // First the node leading the events queue, then the one serve consumes from.
        let leader = if round == 0 {
            cluster
                .leader(&events_queue)
                .expect("the events queue's leader")
        } else {
            node_of(&cluster, &session)
        };
        let first = batch * (1 + 2 * round);
        let stopped_at = Instant::now();
        tokio::task::block_in_place(|| cluster.stop_node(leader)).expect("node stops");
        let stop_took = stopped_at.elapsed();
        reported += publish(&producer, first, first + batch).await;
        let marker = format!("/runs/{first}\"");
        eventually(
            WAIT,
            "the first event published during the stop delivered",
            || async {
                one.answered()
                    .iter()
                    .any(|r| String::from_utf8_lossy(&r.body).contains(&marker))
                    .then_some(())
            },
        )
        .await;
        let resumed_after = stopped_at.elapsed();
        eprintln!(
            "round {round}: stopped hwc{leader}@localhost in {stop_took:?}; first event published after the stop delivered {resumed_after:?} after the stop began"
        );
        resumed.push(resumed_after);
        tokio::task::block_in_place(|| cluster.start_node(leader)).expect("node starts again");
        reported += publish(&producer, first + batch, first + 2 * batch).await;
    }
    resumed.sort();
    eprintln!("deliveries resumed after a node stop began: {resumed:?}");

    eventually(
        Duration::from_secs(300),
        "every event at both receivers",
        || async { (ledger(&one).len() == EVENTS && ledger(&two).len() == EVENTS).then_some(()) },
    )
    .await;
    let delivered = one.answered().len() + two.answered().len();
    eprintln!(
        "two node stops: {} deliveries for {} events × 2 receivers ({} duplicates); {reported} publish(es) reported failed and published again",
        delivered,
        EVENTS,
        delivered - 2 * EVENTS
    );
    eventually(WAIT, "serve is ready", || async {
        let ready = http.get(format!("http://{api}/readyz")).send().await.ok()?;
        ready.status().is_success().then_some(())
    })
    .await;
    // serve moved: its sessions opened on more than one node.
    let metrics = http
        .get(format!("http://{api}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let nodes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("hookwire_broker_sessions_total{"))
        .collect();
    eprintln!("{nodes:#?}");
    assert!(nodes.len() >= 2, "sessions on one node only: {nodes:?}");
    producer.close().await.expect("close");
    let status = serve.terminate(WAIT).await.expect("serve stops");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    // The cluster, its queues with it, is removed when dropped.
    drop(cluster);
}

/// A loopback TCP proxy to the test broker that can be cut: its connections closed and
/// its port closed, as a broker node that goes away.
struct Severable {
    url: String,
    task: tokio::task::JoinHandle<()>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Severable {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let broker_url = hookwire_testkit::amqp_url();
        let broker = hookwire_amqp::address(&broker_url);
        let links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            std::sync::Arc::default();
        let task = tokio::spawn({
            let (links, broker) = (links.clone(), broker.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    links.lock().expect("lock").push(tokio::spawn({
                        let broker = broker.clone();
                        async move {
                            if let Ok(mut upstream) = tokio::net::TcpStream::connect(&broker).await
                            {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            }
                        }
                    }));
                }
            }
        });
        Self {
            url: broker_url.replacen(&broker, &format!("127.0.0.1:{port}"), 1),
            task,
            links,
        }
    }

    /// Closes every connection through the proxy, and the proxy's port.
    fn sever(&self) {
        self.task.abort();
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }
}

/// The producer's node goes away between two publishes, then every node: the publish
/// after the first loss is confirmed through the other node; with no node left, the
/// publish is reported failed, not taken as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_publishes_through_the_next_node_and_reports_when_none_is_left() {
    let namespace = hookwire_testkit::unique_namespace();
    let broker = hookwire_testkit::Broker::connect().await;
    let topology = hookwire_amqp::Topology::new(&namespace, []);
    let channel = broker.connection().create_channel().await.expect("channel");
    topology.declare(&channel).await.expect("declare");
    let (first, second) = (Severable::start().await, Severable::start().await);
    let producer = Producer::connect_any(
        Brokers::starting_at(vec![first.url.clone(), second.url.clone()], 0),
        &namespace,
        "hookwire-failover-producer",
        Catalog::builtin(),
    )
    .await
    .expect("producer");
    let event = |i: usize| OutgoingEvent {
        org: "acme".into(),
        event_type: "report_run_completed".into(),
        id: format!("evt-{i}"),
        data: serde_json::from_value(
            json!({"report_run_url": format!("https://mode.test/runs/{i}")}),
        )
        .expect("a map"),
    };
    producer
        .publish(&event(0))
        .await
        .expect("through the first node");
    first.sever();
    producer
        .publish(&event(1))
        .await
        .expect("through the second node");
    second.sever();
    producer
        .publish(&event(2))
        .await
        .expect_err("no node left: reported failed");

    let stored: BTreeMap<String, usize> = broker
        .drain(&format!("{namespace}.events"))
        .await
        .iter()
        .fold(BTreeMap::new(), |mut seen, (_, body)| {
            let body = String::from_utf8_lossy(body);
            for i in 0..3 {
                if body.contains(&format!("/runs/{i}\"")) {
                    *seen.entry(format!("evt-{i}")).or_insert(0) += 1;
                }
            }
            seen
        });
    assert!(stored.get("evt-0").is_some_and(|n| *n >= 1), "{stored:?}");
    assert!(stored.get("evt-1").is_some_and(|n| *n >= 1), "{stored:?}");
    assert_eq!(stored.get("evt-2"), None, "{stored:?}");
    drop(producer);
    topology.delete(&channel).await.expect("cleanup");
}

fn write_config(config: &hookwire_core::Config, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("hookwire.toml");
    std::fs::write(&path, config.to_toml()).expect("write config");
    path
}
