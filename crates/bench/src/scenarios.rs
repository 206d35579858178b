//! The scenarios, run in order against one broker: one `serve` for the delivery
//! scenarios is started first; then, `--rounds` times, baseline, fanout1, the broker alone
//! at the latency rate and latency; then fanout10 and retries; a second `serve` for
//! memory; the store in-process.

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
use crate::procfs::{self, CpuSplit, Watched};
use crate::receiver::Receiver;
use crate::report::ScenarioResult;
use crate::serve::{Serve, ServeSettings, subscription};
use crate::store_scenario;
use crate::tally::{Mode, Tally};

/// One scenario of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// RabbitMQ alone: the limit.
    Baseline,
    /// One subscriber per event.
    Fanout1,
    /// Ten subscribers per event.
    Fanout10,
    /// A fixed rate, publish-to-receipt percentiles (and baseline's at the same rate).
    Latency,
    /// 30 % of first attempts answered 500.
    Retries,
    /// serve's RSS at a steady rate, then with deliveries parked in a tier.
    Memory,
    /// Lookups among many subscriptions in sled.
    Store,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Self; 7] = [
        Self::Baseline,
        Self::Fanout1,
        Self::Fanout10,
        Self::Latency,
        Self::Retries,
        Self::Memory,
        Self::Store,
    ];

    /// Whether it runs `hookwire serve`.
    pub fn needs_serve(self) -> bool {
        !matches!(self, Self::Baseline | Self::Store)
    }
}

/// The subscription orgs of the delivery serve, and their subscriber counts.
const FANOUT1_ORG: &str = "bench-fanout1";
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
    rabbitmq: Option<u32>,
    hz: f64,
    baseline_per_sec: Option<f64>,
    baseline_p99_ms: Option<f64>,
    serves: Vec<Serve>,
}

impl Bench {
    /// Connects to the broker and starts the receiver.
    pub async fn new(cli: Cli, binary: Option<PathBuf>) -> Result<Self> {
        let id: u32 = rand::random();
        let namespace = format!("{}-{id:08x}", cli.namespace_prefix);
        let broker = hookwire_amqp::connect(&cli.amqp_url, &format!("{namespace}-control"))
            .await
            .with_context(|| format!("cannot reach RabbitMQ at {}", redact(&cli.amqp_url)))?;
        let settings = ServeSettings {
            concurrency: cli.concurrency,
            prefetch: cli.prefetch,
            per_endpoint_concurrency: cli.concurrency.max(usize::from(cli.prefetch)),
            retry_schedule: vec!["1s".into(), "5s".into()],
            defer_delay: "1s".into(),
            circuit_failure_threshold: 1_000_000_000,
            log_level: "info".into(),
            cache_capacity_bytes: hookwire_core::Config::defaults().store.cache_capacity_bytes,
        };
        let memory_settings = ServeSettings {
            retry_schedule: vec!["1h".into()],
            ..settings.clone()
        };
        Ok(Self {
            receiver: Receiver::start(cli.receiver_threads)?,
            memory_namespace: format!("{namespace}-mem"),
            baseline_namespace: format!("{namespace}-base"),
            namespace,
            broker,
            settings,
            memory_settings,
            rabbitmq: procfs::rabbitmq_pid(),
            hz: procfs::ticks_per_sec(),
            baseline_per_sec: None,
            baseline_p99_ms: None,
            serves: Vec::new(),
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
            Scenario::Fanout10,
            Scenario::Latency,
            Scenario::Retries,
        ];
        // Started before the first baseline, so that every baseline runs beside the same
        // idle serve, whichever round it belongs to.
        let serve = if delivery.iter().any(|s| has(*s)) {
            let mut subs = vec![
                subscription(FANOUT1_ORG, &self.receiver.url(0))?,
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
                let r = self.baseline(&label("baseline"), n, None).await?;
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
            if let (Some(serve), true) = (serve, has(Scenario::Latency)) {
                let n = self.latency_events();
                let r = self
                    .baseline(&label("baseline-latency"), n, Some(self.cli.rate))
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
        if has(Scenario::Memory) {
            results.extend(self.memory().await?);
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
        let binary = self
            .binary
            .clone()
            .context("no hookwire binary was located")?;
        eprintln!("starting {} serve ({namespace})", binary.display());
        let serve = Serve::start(
            &binary,
            namespace,
            &self.cli.amqp_url,
            settings,
            subs,
            &self.broker,
        )
        .await?;
        self.serves.push(serve);
        Ok(self.serves.len() - 1)
    }

    fn watched(&self, serve: Option<usize>) -> Watched {
        Watched {
            serve: serve.map(|i| self.serves[i].pid()),
            rabbitmq: self.rabbitmq,
            hz: self.hz,
        }
    }

    async fn baseline(&self, name: &str, n: usize, rate: Option<f64>) -> Result<ScenarioResult> {
        eprintln!("{name}: {n} messages");
        let tally = Arc::new(Tally::new(n, 1, Mode::Ok, Instant::now()));
        let consumer = hookwire_amqp::connect(
            &self.cli.amqp_url,
            &format!("{}-consumer", self.baseline_namespace),
        )
        .await?;
        let source = Source::connect(&self.cli.amqp_url, &self.baseline_namespace).await?;
        let watched = self.watched(None);
        let before = watched.snapshot();
        let deadline = Instant::now() + deadline_for(n as u64, rate);
        let queue = Names::new(&self.baseline_namespace).events_queue();
        let consume = tokio::spawn(consume_until_owned(
            consumer,
            queue,
            self.cli.prefetch,
            tally.clone(),
            deadline,
        ));
        let publish_secs = source
            .publish_all("bench-baseline", &tally, self.cli.confirm_window, rate)
            .await?;
        consume.await??;
        let cpu = watched.since(&before);
        source.close().await;
        let mut r = result(name, &tally, cpu, "msg/s");
        r.setup = format!(
            "RabbitMQ alone: hookwire's events exchange and quorum queue (its arguments), {}; \
             confirm window {}, prefetch {}, one ack per message; publisher and consumer on two \
             connections, at the same time; hookwire's message (Producer::encode, {} B body)",
            match rate {
                Some(rate) => format!("{rate} msg/s for {} s", self.cli.latency_secs),
                None => format!("{n} messages"),
            },
            self.cli.confirm_window,
            self.cli.prefetch,
            body_len(),
        );
        r.publish_secs = Some(publish_secs);
        r.notes.push(format!(
            "publishing alone finished in {publish_secs:.2} s ({:.0} msg/s confirmed)",
            n as f64 / publish_secs.max(1e-9)
        ));
        Ok(r)
    }

    async fn deliver(&mut self, serve: usize, step: Step) -> Result<ScenarioResult> {
        let Step {
            scenario,
            name,
            org,
            fanout,
            mode,
            events: n,
            rate,
            setup,
        } = step;
        eprintln!("{name}: {n} events × {fanout} subscriber(s)");
        let tally = Arc::new(Tally::new(n, fanout, mode, Instant::now()));
        self.receiver.count_into(tally.clone());
        let source = Source::connect(&self.cli.amqp_url, self.serves[serve].namespace()).await?;
        let watched = self.watched(Some(serve));
        let before = watched.snapshot();
        let rss = RssSampler::start(self.serves[serve].pid());
        let publish_secs = source
            .publish_all(org, &tally, self.cli.confirm_window, rate)
            .await?;
        let deadline = Instant::now() + deadline_for(tally.expected(), None);
        let mut last_progress = Instant::now();
        while tally.delivered() < tally.expected() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if last_progress.elapsed() > Duration::from_secs(1) {
                self.serves[serve].check_alive()?;
                last_progress = Instant::now();
            }
        }
        let cpu = watched.since(&before);
        let (rss_max, rss_end) = rss.stop();
        source.close().await;
        let mut r = result(&name, &tally, cpu, "deliveries/s");
        r.setup = setup;
        r.publish_secs = Some(publish_secs);
        r.vs_baseline = self
            .baseline_per_sec
            .filter(|_| matches!(scenario, Scenario::Fanout1 | Scenario::Fanout10))
            .map(|b| r.per_sec / b);
        r.p99_gap_ms = self
            .baseline_p99_ms
            .filter(|_| scenario == Scenario::Latency)
            .zip(r.latency)
            .map(|(b, l)| l.p99_ms - b);
        if let Some(gap) = r.p99_gap_ms {
            r.notes.push(format!(
                "p99 {gap:+.2} ms against the broker alone just before it"
            ));
        }
        r.serve_rss_max_mib = rss_max;
        r.serve_rss_end_mib = rss_end;
        Ok(r)
    }

    async fn memory(&mut self) -> Result<Vec<ScenarioResult>> {
        let subs = [
            subscription(STEADY_ORG, &self.receiver.url(0))?,
            subscription(PARK_ORG, &self.receiver.url(0))?,
        ];
        let namespace = self.memory_namespace.clone();
        let serve = self
            .start_serve(&namespace, &self.memory_settings.clone(), &subs)
            .await?;
        let idle = procfs::rss_bytes(self.serves[serve].pid());
        let steady_events = (self.cli.rate * self.cli.memory_secs as f64).round() as usize;
        let steady = Step {
            scenario: Scenario::Memory,
            name: "memory-steady".into(),
            org: STEADY_ORG,
            fanout: 1,
            mode: Mode::Ok,
            events: steady_events,
            rate: Some(self.cli.rate),
            setup: format!(
                "serve's RSS at a steady {} events/s for {} s (a fresh serve, retry_schedule [1h])",
                self.cli.rate, self.cli.memory_secs
            ),
        };
        let mut steady = self.deliver(serve, steady).await?;
        steady.notes.push(format!(
            "RSS when idle before the load: {} MiB",
            opt_mib(idle)
        ));

        let n = self.cli.parked;
        eprintln!("memory-parked: parking {n} deliveries in tier 1h");
        let tally = Arc::new(Tally::new(n, 1, Mode::AlwaysFail, Instant::now()));
        self.receiver.count_into(tally.clone());
        let source = Source::connect(&self.cli.amqp_url, &namespace).await?;
        let watched = self.watched(Some(serve));
        let before = watched.snapshot();
        let rss = RssSampler::start(self.serves[serve].pid());
        let started = Instant::now();
        let publish_secs = source
            .publish_all(PARK_ORG, &tally, self.cli.confirm_window, None)
            .await?;
        let tier = Names::new(&namespace).retry_queue(PARK_TIER);
        let deadline = Instant::now() + deadline_for(n as u64, None);
        let mut parked = 0;
        let mut last_report = Instant::now();
        while Instant::now() < deadline {
            self.serves[serve].check_alive()?;
            parked = queue_counts(&self.broker, &tier).await?.0 as usize;
            if parked >= n {
                break;
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("  {parked} parked");
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = watched.since(&before);
        let (rss_max, rss_end) = rss.stop();
        source.close().await;
        let mut r = result("memory-parked", &tally, cpu, "parked/s");
        r.setup = format!(
            "{n} events whose only webhook answers 500: each first attempt fails and the \
             delivery is parked in tier {tier}"
        );
        r.delivered = parked as u64;
        r.secs = secs;
        r.per_sec = parked as f64 / secs.max(1e-9);
        r.latency = None;
        r.complete = parked == n && tally.first_attempts() == n as u64;
        r.publish_secs = Some(publish_secs);
        r.serve_rss_max_mib = rss_max;
        r.serve_rss_end_mib = rss_end;
        r.notes.push(format!(
            "{parked} messages ready in {tier}; serve RSS after parking: {} MiB",
            opt(rss_end)
        ));
        Ok(vec![steady, r])
    }

    async fn store(&self) -> Result<ScenarioResult> {
        let (subs, lookups) = (self.cli.subscriptions, self.cli.lookups);
        eprintln!("store: {subs} subscriptions, {lookups} lookups");
        let cache = self.settings.cache_capacity_bytes;
        let s = tokio::task::spawn_blocking(move || store_scenario::run(subs, lookups, cache))
            .await??;
        Ok(ScenarioResult {
            name: "store".into(),
            setup: format!(
                "{} subscriptions in {} orgs (10 each, one event type each) in a fresh sled \
                 store ({} MiB cache), inserted one apply(Upsert) at a time; then {} \
                 Store::subscribers lookups of a random (org, event type), timed one by one",
                s.subscriptions,
                s.orgs,
                cache >> 20,
                s.lookups
            ),
            events: s.lookups,
            expected: s.lookups as u64,
            delivered: s.lookups as u64,
            duplicates: 0,
            failed_answers: 0,
            strays: 0,
            secs: s.lookup_secs,
            per_sec: s.lookups as f64 / s.lookup_secs.max(1e-9),
            unit: "lookups/s".into(),
            vs_baseline: None,
            p99_gap_ms: None,
            publish_secs: None,
            latency: Some(s.resolve),
            cpu: None,
            serve_rss_max_mib: None,
            serve_rss_end_mib: None,
            complete: true,
            notes: vec![
                format!(
                    "store on disk: {:.1} MiB ({:.0} B per subscription); inserting took {:.1} s",
                    s.disk_bytes as f64 / (1 << 20) as f64,
                    s.disk_bytes as f64 / s.subscriptions.max(1) as f64,
                    s.insert_secs
                ),
                format!(
                    "resolve time per lookup: p50 {:.3} ms, p99 {:.3} ms; {:.1} subscriptions returned per lookup \
                     (random pairs: the decoded-subscriber cache misses, sled answers)",
                    s.resolve.p50_ms, s.resolve.p99_ms, s.subscribers_per_lookup
                ),
                format!(
                    "resolve time per lookup in a hot set of {} pairs (cached): p50 {:.4} ms, p99 {:.4} ms",
                    store_scenario::HOT_SET,
                    s.resolve_cached.p50_ms,
                    s.resolve_cached.p99_ms
                ),
            ],
            store: Some(s),
        })
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
                "warning: cleanup: cannot reach RabbitMQ; delete the queues of namespaces {}, {} and {} by hand",
                self.namespace, self.baseline_namespace, self.memory_namespace
            );
            return;
        };
        for serve in self.serves.drain(..) {
            if let Err(e) = serve.stop(&broker).await {
                eprintln!("warning: cleanup: {e:#}");
            }
        }
        // Deleting twice is harmless; a namespace whose serve never started still goes.
        for topology in [
            Self::delivery_topology(&self.namespace),
            Self::delivery_topology(&self.baseline_namespace),
            self.memory_topology(),
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

async fn consume_until_owned(
    connection: Connection,
    queue: String,
    prefetch: u16,
    tally: Arc<Tally>,
    deadline: Instant,
) -> Result<()> {
    let result = consume_until(&connection, &queue, prefetch, tally, deadline).await;
    let _ = connection.close(200, "bye".into()).await;
    result
}

/// A generous bound: 60 s plus 2 ms per delivery.
fn deadline_for(deliveries: u64, rate: Option<f64>) -> Duration {
    let publishing = rate.map_or(0.0, |r| deliveries as f64 / r);
    Duration::from_secs_f64(60.0 + publishing + deliveries as f64 * 0.002)
}

fn body_len() -> usize {
    serde_json::to_vec(&serde_json::json!({
        "event": crate::amqp::EVENT_TYPE,
        "report_run_url": format!("https://app.mode.com/{FANOUT1_ORG}/reports/8f2c1e0a9b7d/runs/12345"),
    }))
    .map_or(0, |b| b.len())
}

fn result(name: &str, tally: &Tally, cpu: CpuSplit, unit: &str) -> ScenarioResult {
    let secs = tally.span_secs();
    let delivered = tally.delivered();
    ScenarioResult {
        name: name.into(),
        setup: String::new(),
        events: tally.events(),
        expected: tally.expected(),
        delivered,
        duplicates: tally.duplicates(),
        failed_answers: tally.failed_answers(),
        strays: tally.strays(),
        secs,
        per_sec: delivered as f64 / secs.max(1e-9),
        unit: unit.into(),
        vs_baseline: None,
        p99_gap_ms: None,
        publish_secs: None,
        latency: Some(tally.latencies()),
        cpu: Some(cpu),
        serve_rss_max_mib: None,
        serve_rss_end_mib: None,
        store: None,
        complete: delivered == tally.expected() && tally.strays() == 0,
        notes: if tally.duplicates() > 0 {
            vec![format!("{} duplicate deliveries", tally.duplicates())]
        } else {
            Vec::new()
        },
    }
}

fn opt(mib: Option<f64>) -> String {
    mib.map_or_else(|| "-".into(), |m| format!("{m:.1}"))
}

fn opt_mib(bytes: Option<u64>) -> String {
    opt(bytes.map(|b| b as f64 / (1 << 20) as f64))
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Samples serve's RSS every 100 ms while a scenario runs.
struct RssSampler {
    pid: u32,
    max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let max = Arc::new(AtomicU64::new(0));
        let task = {
            let max = max.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(rss) = procfs::rss_bytes(pid) {
                        max.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Self { pid, max, task }
    }

    /// The largest RSS seen and the RSS now, in MiB.
    fn stop(self) -> (Option<f64>, Option<f64>) {
        self.task.abort();
        let end = procfs::rss_bytes(self.pid);
        let max = self.max.load(Ordering::Relaxed).max(end.unwrap_or(0));
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        ((max > 0).then(|| mib(max)), end.map(mib))
    }
}
