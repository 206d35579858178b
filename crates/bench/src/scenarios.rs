//! The scenarios, run in order against one broker: one `serve` for the delivery
//! scenarios is started first (and a replicated one for fanout1-replicated); then,
//! `--rounds` times, baseline, fanout1, fanout1-replicated (with `--cluster`, baseline
//! and fanout1 on the cluster), the broker alone at the latency rate and latency; then
//! fanout10 and retries; fairness; drain, slow-receivers and overloaded-receiver, each
//! on serves of their own on the shipped defaults; a fresh `serve` for memory (and one
//! replicated); three replicated nodes for propagation, and a node rebuilt from the
//! streams; a serve on a filled attempt log; the store in-process; stores of several
//! sizes written through the writer (and the API), with serve started on each.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hookwire_amqp::lapin::Connection;
use hookwire_amqp::{Names, Topology};

use crate::amqp::{Source, consume_until, queue_counts};
use crate::cli::Cli;
use crate::cluster::Cluster;
use crate::procfs::{self, CpuSplit, Watched};
use crate::receiver::Receiver;
use crate::report::ScenarioResult;
use crate::scenario::Scenario;
use crate::serve::{Node, Serve, ServeSettings, subscription};
use crate::store_scenario;
use crate::tally::{Mode, Tally};

mod attempt_log;
mod fairness;
mod footprint;
mod order;
mod real;
mod rebuild;
mod replication;
mod runs;
mod store_size;

use footprint::RssSampler;

/// The subscription orgs of the delivery serve, and their subscriber counts.
const FANOUT1_ORG: &str = "bench-fanout1";
const FANOUT1_FILTER_ORG: &str = "bench-fanout1-filter";
/// A filter like Mode's (reports under one path), which every bench event passes.
const FANOUT1_FILTER: &str = r#"event_type == "report_run_completed" && body.report_run_url.startsWith("https://app.mode.com/bench-fanout1-filter/reports/")"#;
const FANOUT1_TRACED_ORG: &str = "bench-fanout1-traced";
const FANOUT1_REPLICATED_ORG: &str = "bench-fanout1-replicated";
const FANOUT1_CLUSTER_ORG: &str = "bench-fanout1-cluster";
const FANOUT10_ORG: &str = "bench-fanout10";
/// The fan-outs `fanout-curve` measures, each an organization of that many webhooks.
const FANOUT_CURVE: [(usize, &str); 5] = [
    (1, "bench-curve-1"),
    (16, "bench-curve-16"),
    (17, "bench-curve-17"),
    (100, "bench-curve-100"),
    (1000, "bench-curve-1000"),
];
const LATENCY_ORG: &str = "bench-latency";
const RETRIES_ORG: &str = "bench-retries";
const STEADY_ORG: &str = "bench-steady";
const PARK_ORG: &str = "bench-park";
/// The tier the memory scenario parks deliveries in.
const PARK_TIER: Duration = Duration::from_secs(3600);
const FAIL_PERCENT: u64 = 30;

/// One delivery scenario of the delivery serve.
struct Step {
    scenario: Scenario,
    name: String,
    org: &'static str,
    fanout: usize,
    mode: Mode,
    events: usize,
    rate: Option<f64>,
    setup: String,
}

/// The state shared by every scenario of one run.
#[derive(Debug)]
pub struct Bench {
    cli: Cli,
    binary: Option<PathBuf>,
    /// The config of the delivery scenarios' serve.
    pub settings: ServeSettings,
    memory_settings: ServeSettings,
    receiver: Receiver,
    broker: Connection,
    namespace: String,
    /// The broker-alone scenarios' namespace: apart from serve's, so that they can run
    /// while serve is up.
    baseline_namespace: String,
    memory_namespace: String,
    /// The traced serve's namespace (fanout1-traced).
    traced_namespace: String,
    /// The fairness serve's namespace.
    fair_namespace: String,
    /// The replicated serve's namespace (fanout1-replicated).
    repl_namespace: String,
    /// memory-replicated's.
    memrepl_namespace: String,
    /// propagation's three nodes'.
    prop_namespace: String,
    /// rebuild's.
    rebuild_namespace: String,
    /// attempt-log's.
    log_namespace: String,
    /// The cluster serve's namespace, and the broker-alone one beside it, on the cluster.
    cluster_namespace: String,
    cluster_baseline_namespace: String,
    rabbitmq: Option<u32>,
    hz: f64,
    baseline_per_sec: Option<f64>,
    cluster_baseline_per_sec: Option<f64>,
    baseline_p99_ms: Option<f64>,
    serves: Vec<Serve>,
    /// `--cluster`'s RabbitMQ cluster, and the serve that runs against it.
    cluster: Option<Cluster>,
    cluster_serve: Option<usize>,
    /// Namespaces declared by the bench with a serve's config (the real-receiver
    /// scenarios'), deleted at cleanup whether or not their serve started.
    extra_topologies: Vec<Topology>,
}

impl Bench {
    /// Connects to the broker and starts the receiver.
    pub async fn new(cli: Cli, binary: Option<PathBuf>) -> Result<Self> {
        let id: u32 = rand::random();
        let namespace = format!("{}-{id:08x}", cli.namespace_prefix);
        let broker = hookwire_amqp::connect(&cli.amqp_url, &format!("{namespace}-control"))
            .await
            .with_context(|| {
                format!(
                    "cannot reach RabbitMQ at {}",
                    hookwire_core::config::redact_url(&cli.amqp_url)
                )
            })?;
        let settings = ServeSettings {
            concurrency: cli.concurrency,
            prefetch: cli.prefetch,
            per_endpoint_concurrency: cli.concurrency.max(usize::from(cli.prefetch)),
            retry_schedule: vec!["1s".into(), "5s".into()],
            defer_delay: "1s".into(),
            circuit_failure_threshold: 1_000_000_000,
            log_level: "info".into(),
            cache_capacity_bytes: hookwire_core::Config::defaults().store.cache_capacity_bytes,
            otlp_endpoint: None,
            replication: false,
        };
        let memory_settings = ServeSettings {
            retry_schedule: vec!["1h".into()],
            ..settings.clone()
        };
        Ok(Self {
            receiver: Receiver::start(cli.receiver_threads)?,
            memory_namespace: format!("{namespace}-mem"),
            traced_namespace: format!("{namespace}-traced"),
            fair_namespace: format!("{namespace}-fair"),
            baseline_namespace: format!("{namespace}-base"),
            repl_namespace: format!("{namespace}-repl"),
            memrepl_namespace: format!("{namespace}-memrepl"),
            prop_namespace: format!("{namespace}-prop"),
            rebuild_namespace: format!("{namespace}-rebuild"),
            log_namespace: format!("{namespace}-log"),
            cluster_namespace: format!("{namespace}-cl"),
            cluster_baseline_namespace: format!("{namespace}-clbase"),
            namespace,
            broker,
            settings,
            memory_settings,
            rabbitmq: procfs::rabbitmq_pid(crate::cluster::DIR_PREFIX),
            hz: procfs::ticks_per_sec(),
            baseline_per_sec: None,
            cluster_baseline_per_sec: None,
            baseline_p99_ms: None,
            serves: Vec::new(),
            cluster: None,
            cluster_serve: None,
            extra_topologies: Vec::new(),
            cli,
            binary,
        })
    }

    fn latency_events(&self) -> usize {
        (self.cli.rate * self.cli.latency_secs as f64).round() as usize
    }

    /// The delivery serve's namespace, and the broker-alone one beside it: tiers 1s and
    /// 5s (the deferral tier is 1s too).
    fn delivery_topology(namespace: &str) -> Topology {
        Topology::new(namespace, [Duration::from_secs(1), Duration::from_secs(5)])
    }

    /// The memory serve's namespace: tier 1h and the deferral tier 1s.
    fn memory_topology(&self) -> Topology {
        Topology::new(&self.memory_namespace, [PARK_TIER, Duration::from_secs(1)])
    }

    async fn start_serve(
        &mut self,
        namespace: &str,
        settings: &ServeSettings,
        subs: &[hookwire_core::Subscription],
    ) -> Result<usize> {
        let node = Node::new(namespace, std::slice::from_ref(&self.cli.amqp_url));
        self.start_node(&node, settings, subs).await
    }

    /// Starts `serve` as `node` (on the machine's broker, or on the cluster when its URLs
    /// are the cluster's) and keeps it with the others; its index.
    async fn start_node(
        &mut self,
        node: &Node,
        settings: &ServeSettings,
        subs: &[hookwire_core::Subscription],
    ) -> Result<usize> {
        let binary = self
            .binary
            .clone()
            .context("no hookwire binary was located")?;
        eprintln!(
            "starting {} serve ({}{})",
            binary.display(),
            node.namespace,
            node.id
                .as_ref()
                .map(|id| format!(", node {id}"))
                .unwrap_or_default()
        );
        let broker = match &self.cluster {
            Some(cluster) if cluster.urls == node.urls => &cluster.broker,
            _ => &self.broker,
        };
        let serve = Serve::start(&binary, node, settings, subs, broker).await?;
        self.serves.push(serve);
        Ok(self.serves.len() - 1)
    }

    /// Starts `--cluster`'s three nodes, declares the broker-alone namespace there and,
    /// for fanout1, starts a serve given all three URLs.
    async fn start_cluster(&mut self, fanout1: bool) -> Result<()> {
        let cluster = Cluster::start(
            self.cli.cluster_port_base,
            &format!("{}-cluster-control", self.namespace),
        )
        .await?;
        let channel = cluster.broker.create_channel().await?;
        Self::cluster_topology(&self.cluster_baseline_namespace)
            .declare(&channel)
            .await?;
        let _ = channel.close(200, "declared".into()).await;
        let node = Node::new(&self.cluster_namespace, &cluster.urls);
        self.cluster = Some(cluster);
        if fanout1 {
            let subs = [subscription(FANOUT1_CLUSTER_ORG, &self.receiver.url(0))?];
            self.cluster_serve = Some(
                self.start_node(&node, &self.settings.clone(), &subs)
                    .await?,
            );
        }
        Ok(())
    }

    /// A broker-alone namespace on the cluster: replicated to the three nodes as serve
    /// declares its own there (`amqp.urls` with three URLs).
    fn cluster_topology(namespace: &str) -> Topology {
        let mut topology = Self::delivery_topology(namespace);
        topology.replication = Some(3);
        topology
    }

    fn watched(&self, serve: Option<usize>) -> Watched {
        let rabbitmq = match (&self.cluster, serve) {
            (Some(cluster), Some(i)) if self.cluster_serve == Some(i) => cluster.pids,
            _ => [self.rabbitmq, None, None],
        };
        Watched {
            serve: serve.map(|i| self.serves[i].pid()),
            rabbitmq,
            hz: self.hz,
        }
    }

    /// Stops every serve and deletes every namespace, whatever happened before, on a
    /// fresh connection: the control connection may be the thing that broke.
    pub async fn cleanup(&mut self) {
        let mut broker = None;
        for _ in 0..30 {
            match hookwire_amqp::connect(&self.cli.amqp_url, &format!("{}-cleanup", self.namespace))
                .await
            {
                Ok(c) => {
                    broker = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        let Some(broker) = broker else {
            eprintln!(
                "warning: cleanup: cannot reach RabbitMQ; delete the queues of namespaces {}-* by hand",
                self.namespace,
            );
            for serve in &mut self.serves {
                let _ = serve.halt().await;
            }
            if let Some(cluster) = self.cluster.take() {
                cluster.stop().await;
            }
            return;
        };
        for (i, serve) in self.serves.drain(..).enumerate() {
            let stopped = match &self.cluster {
                Some(cluster) if self.cluster_serve == Some(i) => serve.stop(&cluster.broker).await,
                _ => serve.stop(&broker).await,
            };
            if let Err(e) = stopped {
                eprintln!("warning: cleanup: {e:#}");
            }
        }
        // Stopped after the serves that use it; its directory goes with it.
        if let Some(cluster) = self.cluster.take() {
            cluster.stop().await;
        }
        // Deleting twice is harmless; a namespace whose serve never started still goes.
        for topology in [
            Self::delivery_topology(&self.namespace),
            Self::delivery_topology(&self.baseline_namespace),
            Self::delivery_topology(&self.traced_namespace),
            Self::delivery_topology(&self.fair_namespace),
            self.memory_topology(),
            // Deleting a namespace deletes its streams too.
            Self::delivery_topology(&self.repl_namespace),
            Topology::new(&self.memrepl_namespace, [PARK_TIER, Duration::from_secs(1)]),
            Self::delivery_topology(&self.prop_namespace),
            Self::delivery_topology(&self.rebuild_namespace),
            Self::delivery_topology(&self.log_namespace),
        ]
        .into_iter()
        .chain(std::mem::take(&mut self.extra_topologies))
        {
            if let Ok(channel) = broker.create_channel().await {
                let _ = topology.delete(&channel).await;
                let _ = channel.close(200, "cleanup".into()).await;
            }
        }
        let _ = broker.close(200, "bye".into()).await;
        let _ = self.broker.close(200, "bye".into()).await;
    }
}
