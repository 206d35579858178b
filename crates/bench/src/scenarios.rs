//! The scenarios, run in order against one broker: one `serve` for the delivery
//! scenarios is started first (and a replicated one for fanout1-replicated); then,
//! `--rounds` times, baseline, fanout1, fanout1-replicated (with `--cluster`, baseline
//! and fanout1 on the cluster), the broker alone at the latency rate and latency; then
//! fanout10 and retries; a fresh `serve` for memory (and one replicated); three
//! replicated nodes for propagation, and a node rebuilt from the streams; the store
//! in-process.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hookwire_amqp::lapin::Connection;
use hookwire_amqp::{Names, Topology};
use serde::Serialize;

use crate::Cli;
use crate::amqp::{Source, consume_until, queue_counts};
use crate::cluster::Cluster;
use crate::procfs::{self, CpuSplit, Watched};
use crate::receiver::Receiver;
use crate::report::ScenarioResult;
use crate::serve::{Node, Serve, ServeSettings, subscription};
use crate::store_scenario;
use crate::tally::{Mode, Tally};

mod fairness;
mod footprint;
mod replication;
mod runs;

use footprint::RssSampler;

/// One scenario of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// RabbitMQ alone: the limit.
    Baseline,
    /// One subscriber per event.
    Fanout1,
    /// fanout1 on a second serve with replication on: what the streams cost.
    Fanout1Replicated,
    /// fanout1 with a payload filter that every event passes: the filter's cost.
    Fanout1Filter,
    /// fanout1 on a second serve exporting spans over OTLP: what tracing costs.
    Fanout1Traced,
    /// Ten subscribers per event.
    Fanout10,
    /// A fixed rate, publish-to-receipt percentiles (and baseline's at the same rate).
    Latency,
    /// 30 % of first attempts answered 500.
    Retries,
    /// Two organizations, one publishing 20× the other's rate, to slow receivers: each
    /// one's latency while they share the attempt slots.
    Fairness,
    /// serve's RSS at a steady rate, then with deliveries parked in a tier.
    Memory,
    /// serve's RSS at a steady rate with replication on, and the attempt log's size.
    MemoryReplicated,
    /// Three replicated nodes: a change through node 1's API until node 3's shows it.
    Propagation,
    /// A node with an empty data directory rebuilding from the streams.
    Rebuild,
    /// Lookups among many subscriptions in sled.
    Store,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Self; 14] = [
        Self::Baseline,
        Self::Fanout1,
        Self::Fanout1Replicated,
        Self::Fanout1Filter,
        Self::Fanout1Traced,
        Self::Fanout10,
        Self::Latency,
        Self::Retries,
        Self::Fairness,
        Self::Memory,
        Self::MemoryReplicated,
        Self::Propagation,
        Self::Rebuild,
        Self::Store,
    ];

    /// Whether it runs `hookwire serve`.
    pub fn needs_serve(self) -> bool {
        !matches!(self, Self::Baseline | Self::Store)
    }
}

/// The subscription orgs of the delivery serve, and their subscriber counts.
const FANOUT1_ORG: &str = "bench-fanout1";
const FANOUT1_FILTER_ORG: &str = "bench-fanout1-filter";
/// A filter like Mode's (reports under one path), which every bench event passes.
const FANOUT1_FILTER: &str = r#"event_type == "report_run_completed" && body.report_run_url.startsWith("https://app.mode.com/bench-fanout1-filter/reports/")"#;
const FANOUT1_TRACED_ORG: &str = "bench-fanout1-traced";
const FANOUT1_REPLICATED_ORG: &str = "bench-fanout1-replicated";
const FANOUT1_CLUSTER_ORG: &str = "bench-fanout1-cluster";
const FANOUT10_ORG: &str = "bench-fanout10";
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
            cluster_namespace: format!("{namespace}-cl"),
            cluster_baseline_namespace: format!("{namespace}-clbase"),
            namespace,
            broker,
            settings,
            memory_settings,
            rabbitmq: procfs::rabbitmq_pid(),
            hz: procfs::ticks_per_sec(),
            baseline_per_sec: None,
            cluster_baseline_per_sec: None,
            baseline_p99_ms: None,
            serves: Vec::new(),
            cluster: None,
            cluster_serve: None,
            cli,
            binary,
        })
    }

    /// Runs the selected scenarios in order.
    pub async fn run(&mut self, selected: &[Scenario]) -> Result<Vec<ScenarioResult>> {
        let mut results = Vec::new();
        let has = |s: Scenario| selected.contains(&s);
        eprintln!(
            "hookwire-bench: namespace {}, receiver on {}",
            self.namespace,
            self.receiver.url(0)
        );
        if has(Scenario::Baseline) || has(Scenario::Latency) {
            let channel = self.broker.create_channel().await?;
            Self::delivery_topology(&self.baseline_namespace)
                .declare(&channel)
                .await?;
            let _ = channel.close(200, "declared".into()).await;
        }
        let delivery = [
            Scenario::Fanout1,
            Scenario::Fanout1Filter,
            Scenario::Fanout10,
            Scenario::Latency,
            Scenario::Retries,
        ];
        // Started before the first baseline, so that every baseline runs beside the same
        // idle serve, whichever round it belongs to.
        let serve = if delivery.iter().any(|s| has(*s)) {
            let mut filtered = subscription(FANOUT1_FILTER_ORG, &self.receiver.url(0))?;
            filtered.filter = Some(hookwire_core::Filter::parse(FANOUT1_FILTER)?);
            let mut subs = vec![
                subscription(FANOUT1_ORG, &self.receiver.url(0))?,
                filtered,
                subscription(LATENCY_ORG, &self.receiver.url(0))?,
                subscription(RETRIES_ORG, &self.receiver.url(0))?,
            ];
            for k in 0..10 {
                subs.push(subscription(FANOUT10_ORG, &self.receiver.url(k))?);
            }
            Some(
                self.start_serve(&self.namespace.clone(), &self.settings.clone(), &subs)
                    .await?,
            )
        } else {
            None
        };
        // A second serve, the same but exporting spans to the receiver's OTLP sink, so that
        // fanout1 and fanout1-traced run side by side in each round.
        let traced = if has(Scenario::Fanout1Traced) {
            let settings = ServeSettings {
                otlp_endpoint: Some(self.receiver.otlp_endpoint()),
                ..self.settings.clone()
            };
            let subs = [subscription(FANOUT1_TRACED_ORG, &self.receiver.url(0))?];
            Some(
                self.start_serve(&self.traced_namespace.clone(), &settings, &subs)
                    .await?,
            )
        } else {
            None
        };
        // The same as the delivery serve, with the store replicated through the streams,
        // so that fanout1 and fanout1-replicated run side by side in each round.
        let replicated = if has(Scenario::Fanout1Replicated) {
            let settings = ServeSettings {
                replication: true,
                ..self.settings.clone()
            };
            let subs = [subscription(FANOUT1_REPLICATED_ORG, &self.receiver.url(0))?];
            Some(
                self.start_serve(&self.repl_namespace.clone(), &settings, &subs)
                    .await?,
            )
        } else {
            None
        };
        if self.cli.cluster && (has(Scenario::Baseline) || has(Scenario::Fanout1)) {
            self.start_cluster(has(Scenario::Fanout1)).await?;
        }
        let events = self.cli.events;
        let window = self.cli.confirm_window;
        // The broker's own speed wanders between runs a minute apart on a VM, so each
        // hookwire figure of the bar is compared with the broker alone just before it.
        let rounds = self.cli.rounds.max(1);
        for round in 1..=rounds {
            let label = |name: &str| {
                if rounds == 1 {
                    name.to_owned()
                } else {
                    format!("{name} #{round}")
                }
            };
            if has(Scenario::Baseline) {
                let n = if self.cli.smoke {
                    events
                } else {
                    events.max(20_000)
                };
                let r = self.baseline(&label("baseline"), n, None, false).await?;
                self.baseline_per_sec = Some(r.per_sec);
                results.push(r);
            }
            if let (Some(serve), true) = (serve, has(Scenario::Fanout1)) {
                let step = Step {
                    scenario: Scenario::Fanout1,
                    name: label("fanout1"),
                    org: FANOUT1_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: format!(
                        "{events} events as fast as the confirm window ({window}) allows; 1 webhook"
                    ),
                };
                results.push(self.deliver(serve, step).await?);
            }
            if let Some(replicated) = replicated {
                let step = Step {
                    scenario: Scenario::Fanout1Replicated,
                    name: label("fanout1-replicated"),
                    org: FANOUT1_REPLICATED_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: "as fanout1, right after it, on a second serve with the same settings and replication.enabled (the store's changes through <ns>.changes, kept event bodies through <ns>.payloads, attempt records through <ns>.attempts)".into(),
                };
                let mut r = self.deliver(replicated, step).await?;
                let plain = results
                    .iter()
                    .rev()
                    .find(|p| p.name == label("fanout1"))
                    .cloned();
                if let Some(plain) = plain {
                    r.vs_fanout1 = Some(r.per_sec / plain.per_sec.max(1e-9));
                    let diff = |a: Option<f64>, b: Option<f64>| {
                        a.zip(b)
                            .map_or_else(|| "-".to_owned(), |(a, b)| format!("{:+.0}", a - b))
                    };
                    r.notes.push(format!(
                        "{:.2} × fanout1 of this round; serve CPU µs per delivery {} against fanout1's, RabbitMQ's {}",
                        r.per_sec / plain.per_sec.max(1e-9),
                        diff(r.serve_us_per_message(), plain.serve_us_per_message()),
                        diff(r.rabbitmq_us_per_message(), plain.rabbitmq_us_per_message()),
                    ));
                }
                results.push(r);
            }
            if self.cluster.is_some() {
                if has(Scenario::Baseline) {
                    let n = if self.cli.smoke {
                        events
                    } else {
                        events.max(20_000)
                    };
                    let r = self
                        .baseline(&label("baseline-cluster"), n, None, true)
                        .await?;
                    self.cluster_baseline_per_sec = Some(r.per_sec);
                    results.push(r);
                }
                if let Some(serve) = self.cluster_serve {
                    let step = Step {
                        scenario: Scenario::Fanout1,
                        name: label("fanout1-cluster"),
                        org: FANOUT1_CLUSTER_ORG,
                        fanout: 1,
                        mode: Mode::Ok,
                        events,
                        rate: None,
                        setup: format!(
                            "as fanout1, on the three-node cluster: serve with amqp.urls of all three (its quorum queues with a member on each node, RabbitMQ's default on a cluster); {events} events published to node 1"
                        ),
                    };
                    let mut r = self.deliver(serve, step).await?;
                    r.vs_baseline = self.cluster_baseline_per_sec.map(|b| r.per_sec / b);
                    results.push(r);
                }
            }
            if let (Some(serve), true) = (serve, has(Scenario::Fanout1Filter)) {
                let step = Step {
                    scenario: Scenario::Fanout1Filter,
                    name: label("fanout1-filter"),
                    org: FANOUT1_FILTER_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: format!(
                        "as fanout1, right after it, with the webhook's filter `{FANOUT1_FILTER}` (every event passes)"
                    ),
                };
                results.push(self.deliver(serve, step).await?);
            }
            if let Some(traced) = traced {
                let exports = self.receiver.otlp_requests();
                let step = Step {
                    scenario: Scenario::Fanout1Traced,
                    name: label("fanout1-traced"),
                    org: FANOUT1_TRACED_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: "as fanout1, right after it, on a second serve with the same settings and tracing.otlp_endpoint set (an event span and an attempt span per event, exported to a loopback sink)".into(),
                };
                let mut r = self.deliver(traced, step).await?;
                // The last batch leaves within half a second of its last span.
                tokio::time::sleep(Duration::from_millis(700)).await;
                let exports = self.receiver.otlp_requests() - exports;
                r.notes
                    .push(format!("{exports} OTLP export requests received"));
                r.complete &= exports > 0;
                results.push(r);
            }
            if let (Some(serve), true) = (serve, has(Scenario::Latency)) {
                let n = self.latency_events();
                let r = self
                    .baseline(&label("baseline-latency"), n, Some(self.cli.rate), false)
                    .await?;
                self.baseline_p99_ms = r.latency.map(|l| l.p99_ms);
                results.push(r);
                let step = Step {
                    scenario: Scenario::Latency,
                    name: label("latency"),
                    org: LATENCY_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events: n,
                    rate: Some(self.cli.rate),
                    setup: format!(
                        "{} events/s for {} s, 1 webhook; from just before basic.publish to receipt by the receiver",
                        self.cli.rate, self.cli.latency_secs
                    ),
                };
                results.push(self.deliver(serve, step).await?);
            }
        }
        if let Some(serve) = serve {
            let steps = [
                Step {
                    scenario: Scenario::Fanout10,
                    name: "fanout10".into(),
                    org: FANOUT10_ORG,
                    fanout: 10,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: format!(
                        "{events} events, 10 webhooks of one org each (attempted inline: inline_fanout_max 16)"
                    ),
                },
                Step {
                    scenario: Scenario::Retries,
                    name: "retries".into(),
                    org: RETRIES_ORG,
                    fanout: 1,
                    mode: Mode::FailFirst {
                        percent: FAIL_PERCENT,
                    },
                    events,
                    rate: None,
                    setup: format!(
                        "{events} events, 1 webhook answering 500 to the first attempt of {FAIL_PERCENT} % of them; retried from tier 1s"
                    ),
                },
            ];
            for step in steps {
                if !has(step.scenario) {
                    continue;
                }
                let (scenario, n) = (step.scenario, step.events);
                let mut r = self.deliver(serve, step).await?;
                if scenario == Scenario::Retries {
                    let failing = (0..n)
                        .filter(|&s| Tally::fails_first(s, FAIL_PERCENT))
                        .count() as u64;
                    r.notes.push(format!(
                        "{} first attempts answered 500 (expected {failing}); {} of {} events delivered",
                        r.failed_answers, r.delivered, r.expected
                    ));
                    r.complete &= r.failed_answers == failing;
                }
                results.push(r);
            }
        }
        if has(Scenario::Fairness) {
            results.push(self.fairness().await?);
        }
        if has(Scenario::Memory) {
            results.extend(self.memory().await?);
        }
        if has(Scenario::MemoryReplicated) {
            results.push(self.memory_replicated().await?);
        }
        if has(Scenario::Propagation) {
            results.push(self.propagation().await?);
        }
        if has(Scenario::Rebuild) {
            results.push(self.rebuild().await?);
        }
        if has(Scenario::Store) {
            results.push(self.store().await?);
        }
        for serve in &self.serves {
            for line in serve.unexpected_log_lines().iter().take(5) {
                eprintln!("serve log: {line}");
            }
        }
        Ok(results)
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
        ] {
            if let Ok(channel) = broker.create_channel().await {
                let _ = topology.delete(&channel).await;
                let _ = channel.close(200, "cleanup".into()).await;
            }
        }
        let _ = broker.close(200, "bye".into()).await;
        let _ = self.broker.close(200, "bye".into()).await;
    }
}
