//! What users meet: `serve` on the shipped defaults (`config/default.toml`'s
//! `delivery.*` and `amqp.prefetch`), beside the bench's settings where that is cheap,
//! against a backlog already queued (drain), receivers that take their time
//! (slow-receivers) and one that is overloaded past a knee (overloaded-receiver).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::runs::{deadline_for, result};
use super::*;
use crate::receiver::{Load, MAX_HELD};
use crate::tally::Overload;

const DRAIN_ORG: &str = "bench-drain";
const SLOW_ONE_ORG: &str = "bench-slow-one";
/// Webhooks of slow-receivers' many-webhook cases, one organization each.
const SLOW_WEBHOOKS: usize = 100;
const OVERLOADED_ORG: &str = "bench-overloaded";
/// The overloaded receiver: 5 ms up to 16 in flight, 5 ms more per extra one, 429 with
/// `Retry-After: 1` past 40.
const OVERLOAD: Overload = Overload {
    base: Duration::from_millis(5),
    knee: 16,
    step: Duration::from_millis(5),
    reject_past: 40,
};
/// How often the receiver's in-flight count is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// The embedded defaults' delivery knobs, as the bench's serve takes them (loopback-only
/// as every bench serve; `delivery.timeout` 15 s and `shutdown_grace` 5 s as the others).
fn shipped_defaults() -> ServeSettings {
    let c = hookwire_core::Config::defaults();
    let d = &c.delivery;
    ServeSettings {
        concurrency: d.concurrency,
        prefetch: c.amqp.prefetch,
        per_endpoint_concurrency: d.per_endpoint_concurrency,
        retry_schedule: d
            .retry_schedule
            .iter()
            .map(|t| humantime::format_duration(*t).to_string())
            .collect(),
        defer_delay: humantime::format_duration(d.defer_delay).to_string(),
        circuit_failure_threshold: d.circuit_failure_threshold,
        log_level: c.log.level.clone(),
        cache_capacity_bytes: c.store.cache_capacity_bytes,
        otlp_endpoint: None,
        replication: false,
    }
}

/// The prefetch `serve` runs with under `settings` (0: twice the concurrency).
fn effective_prefetch(settings: &ServeSettings) -> u16 {
    match settings.prefetch {
        0 => u16::try_from(settings.concurrency.saturating_mul(2)).unwrap_or(u16::MAX),
        n => n,
    }
}

/// Samples the receiver's in-flight count, with the deliveries counted so far, until
/// stopped.
struct InFlightSampler {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Vec<(u64, u64)>>,
}

impl InFlightSampler {
    /// Starts once the receiver holds nothing (the previous case's answers sent, within
    /// a few seconds), so that its peak and samples are this case's.
    async fn start(load: Arc<Load>, tally: Arc<Tally>) -> Self {
        let idle_by = Instant::now() + Duration::from_secs(5);
        while load.in_flight() > 0 && Instant::now() < idle_by {
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        load.reset_peak();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                samples.push((tally.delivered(), load.in_flight()));
            }
            samples
        });
        Self { stop, handle }
    }

    /// The median in flight while the middle 80 % of `expected` were delivered (the
    /// level it settles at, without the start and the tail).
    async fn median_settled(self, expected: u64) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.await.unwrap_or_default();
        let (lo, hi) = (expected / 10, expected - expected / 10);
        let mut settled: Vec<u64> = samples
            .iter()
            .filter(|(d, _)| (lo..=hi).contains(d))
            .map(|&(_, f)| f)
            .collect();
        settled.sort_unstable();
        settled.get(settled.len() / 2).copied().unwrap_or(0)
    }
}

/// serve's counters that say how a delivery got its slot, or did not.
const COUNTERS: [&str; 5] = [
    "hookwire_deliveries_waited_for_slot_total",
    "hookwire_deferrals_total",
    "hookwire_deliveries_held_total",
    "hookwire_retries_scheduled_total",
    "hookwire_circuit_transitions_total",
];

/// [`COUNTERS`] from serve's `/metrics`, one entry per series (a counter appears once
/// it first grows); `None` if it cannot be read.
async fn counters(api: std::net::SocketAddr) -> Option<Vec<(String, f64)>> {
    let text = async {
        reqwest::Client::new()
            .get(format!("http://{api}/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .text()
            .await
    };
    let text = text.await.ok()?;
    let series = text
        .lines()
        .filter(|l| COUNTERS.iter().any(|c| l.starts_with(c)))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    Some(series)
}

/// What the counters grew by between two reads, in words.
fn counted_since(before: Option<&[(String, f64)]>, after: Option<&[(String, f64)]>) -> String {
    let (Some(before), Some(after)) = (before, after) else {
        return "serve's counters could not be read".into();
    };
    let grown: Vec<String> = after
        .iter()
        .filter_map(|(series, v)| {
            let was = before
                .iter()
                .find(|(s, _)| s == series)
                .map_or(0.0, |(_, w)| *w);
            (v - was > 0.0).then(|| format!("{series} +{}", v - was))
        })
        .collect();
    if grown.is_empty() {
        "serve's counters: no delivery waited for a slot, was deferred, held or retried".into()
    } else {
        format!("serve's counters: {}", grown.join(", "))
    }
}

/// The CPU split and `serve`'s RSS of a scenario, from [`Bench::measure`] on.
struct Measuring {
    watched: Watched,
    before: procfs::CpuSnapshot,
    rss: RssSampler,
}

impl Measuring {
    /// The CPU split since the start, and `serve`'s RSS (max, end).
    fn finish(self) -> (CpuSplit, (Option<f64>, Option<f64>)) {
        (self.watched.since(&self.before), self.rss.stop())
    }
}

/// `r` of a scenario whose events were queued before `serve` spawned at `spawned_at`:
/// timed from the spawn to the last receipt, with `serve`'s RSS (max, end).
fn from_spawn(
    mut r: ScenarioResult,
    tally: &Tally,
    spawned_at: Instant,
    publish_secs: f64,
    (rss_max, rss_end): (Option<f64>, Option<f64>),
) -> ScenarioResult {
    r.secs = tally
        .last_received_at()
        .map_or(0.0, |t| t.duration_since(spawned_at).as_secs_f64());
    r.per_sec = r.delivered as f64 / r.secs.max(1e-9);
    r.latency = None;
    r.publish_secs = Some(publish_secs);
    r.serve_rss_max_mib = rss_max;
    r.serve_rss_end_mib = rss_end;
    r
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

impl Bench {
    /// Starts measuring `serve`: the CPU split and `serve`'s RSS, until [`Measuring::finish`].
    fn measure(&self, serve: usize) -> Measuring {
        let watched = self.watched(Some(serve));
        let before = watched.snapshot();
        let rss = RssSampler::start(self.serves[serve].pid());
        Measuring {
            watched,
            before,
            rss,
        }
    }

    /// Waits until every delivery of `tally` arrived (or the deadline), checking that
    /// `serve` is alive.
    async fn await_deliveries(&mut self, serve: usize, tally: &Tally) -> Result<()> {
        let deadline = Instant::now() + deadline_for(tally.expected(), None);
        let mut last_check = Instant::now();
        while tally.delivered() < tally.expected() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if last_check.elapsed() > Duration::from_secs(1) {
                self.serves[serve].check_alive()?;
                last_check = Instant::now();
            }
        }
        Ok(())
    }

    /// Declares `namespace` as a serve with `settings` would, and keeps it for cleanup.
    async fn declare_serve_namespace(
        &mut self,
        namespace: &str,
        settings: &ServeSettings,
    ) -> Result<()> {
        let node = Node::new(namespace, std::slice::from_ref(&self.cli.amqp_url));
        let config = settings.config(&node, Path::new("/nonexistent-hwbench-store"))?;
        let topology = Topology::of_config(&config)?;
        let channel = self.broker.create_channel().await?;
        topology.declare(&channel).await?;
        let _ = channel.close(200, "declared".into()).await;
        self.extra_topologies.push(topology);
        Ok(())
    }

    /// drain-baseline, then drain on the shipped defaults (and on the bench's settings
    /// unless --smoke): N events queued while nothing consumes, then consumed.
    pub(super) async fn drain(&mut self) -> Result<Vec<ScenarioResult>> {
        let n = self.cli.drain_events;
        let window = self.cli.confirm_window;
        let defaults = shipped_defaults();
        let mut results = Vec::new();

        // RabbitMQ alone: the same queue arguments and prefetch as serve on the defaults.
        let namespace = format!("{}-drainbase", self.namespace);
        let topology = Self::delivery_topology(&namespace);
        let channel = self.broker.create_channel().await?;
        topology.declare(&channel).await?;
        let _ = channel.close(200, "declared".into()).await;
        self.extra_topologies.push(topology);
        eprintln!("drain-baseline: {n} messages queued, then consumed");
        let tally = Arc::new(Tally::new(n, 1, Mode::Ok, Instant::now()));
        let source = Source::connect(&self.cli.amqp_url, &namespace).await?;
        let publish_secs = source.publish_all(DRAIN_ORG, &tally, window, None).await?;
        source.close().await;
        let prefetch = effective_prefetch(&defaults);
        let consumer =
            hookwire_amqp::connect(&self.cli.amqp_url, &format!("{namespace}-consumer")).await?;
        let watched = self.watched(None);
        let before = watched.snapshot();
        let started = Instant::now();
        let consumed = consume_until(
            &consumer,
            &Names::new(&namespace).events_queue(),
            prefetch,
            tally.clone(),
            Instant::now() + deadline_for(n as u64, None),
        )
        .await;
        let cpu = watched.since(&before);
        let _ = consumer.close(200, "bye".into()).await;
        consumed?;
        let mut base = result("drain-baseline", &tally, cpu, "msg/s");
        base.secs = tally
            .last_received_at()
            .map_or(0.0, |t| t.duration_since(started).as_secs_f64());
        base.per_sec = base.delivered as f64 / base.secs.max(1e-9);
        base.latency = None;
        base.publish_secs = Some(publish_secs);
        base.setup = format!(
            "RabbitMQ alone: {n} messages published into hookwire's events queue (its arguments) with nothing consuming, then one consumer, prefetch {prefetch} (the defaults' serve's), one ack per message; from basic.consume to the last message"
        );
        let base_per_sec = base.per_sec;
        results.push(base);

        let mut runs = vec![("drain", defaults)];
        if !self.cli.smoke {
            runs.push(("drain-bench-settings", self.settings.clone()));
        }
        for (i, (name, settings)) in runs.into_iter().enumerate() {
            let namespace = format!("{}-drain{i}", self.namespace);
            self.declare_serve_namespace(&namespace, &settings).await?;
            eprintln!("{name}: {n} events queued, then serve started");
            let tally = Arc::new(Tally::new(n, 1, Mode::Ok, Instant::now()));
            let source = Source::connect(&self.cli.amqp_url, &namespace).await?;
            let publish_secs = source.publish_all(DRAIN_ORG, &tally, window, None).await?;
            source.close().await;
            self.receiver.count_into(tally.clone());
            let subs = [subscription(DRAIN_ORG, &self.receiver.url(0))?];
            let serve = self.start_serve(&namespace, &settings, &subs).await?;
            let spawned_at = self.serves[serve].spawned_at;
            let ready_after = self.serves[serve].ready_after;
            let measuring = self.measure(serve);
            self.await_deliveries(serve, &tally).await?;
            let (cpu, (rss_max, rss_end)) = measuring.finish();
            let counted = counters(self.serves[serve].api()).await;
            let mut r = from_spawn(
                result(name, &tally, cpu, "deliveries/s"),
                &tally,
                spawned_at,
                publish_secs,
                (rss_max, rss_end),
            );
            r.notes.push(counted_since(Some(&[]), counted.as_deref()));
            r.vs_baseline = Some(r.per_sec / base_per_sec.max(1e-9));
            r.setup = format!(
                "{n} events queued with nothing consuming, then serve spawned ({}), 1 webhook answering at once; from the spawn to the last receipt (serve's start included: ready after {:.2} s; the CPU columns from ready on)",
                if i == 0 {
                    format!("the shipped defaults: {}", settings.describe())
                } else {
                    "the bench's settings".into()
                },
                ready_after.as_secs_f64(),
            );
            let ratio = r.per_sec / base_per_sec.max(1e-9);
            r.notes.push(format!(
                "{ratio:.2} × drain-baseline ({base_per_sec:.0} msg/s){}",
                if i == 0 {
                    format!("; goal ≥ 0.8: {}", met(ratio >= 0.8))
                } else {
                    String::new()
                }
            ));
            results.push(r);
        }
        Ok(results)
    }

    /// slow-receivers' three cases on the shipped defaults (and the bench's settings
    /// unless --smoke), each serve with its own webhooks.
    pub(super) async fn slow_receivers(&mut self) -> Result<Vec<ScenarioResult>> {
        let mut results = Vec::new();
        // What the broker carries (publish and consume at once), for the goal of the
        // many-webhook case: the baseline of this run, else one now.
        let broker_per_sec = match self.baseline_per_sec {
            Some(b) => b,
            None => {
                let channel = self.broker.create_channel().await?;
                Self::delivery_topology(&self.baseline_namespace)
                    .declare(&channel)
                    .await?;
                let _ = channel.close(200, "declared".into()).await;
                let n = if self.cli.smoke { 300 } else { 20_000 };
                let r = self
                    .baseline("baseline (for slow-receivers)", n, None, false)
                    .await?;
                let per_sec = r.per_sec;
                results.push(r);
                per_sec
            }
        };
        let many_a: Vec<String> = (0..SLOW_WEBHOOKS)
            .map(|k| format!("bench-slow-a{k}"))
            .collect();
        let many_c: Vec<String> = (0..SLOW_WEBHOOKS)
            .map(|k| format!("bench-slow-c{k}"))
            .collect();
        let one = vec![SLOW_ONE_ORG.to_owned()];
        let mut runs = vec![("", shipped_defaults())];
        if !self.cli.smoke {
            runs.push((" (bench settings)", self.settings.clone()));
        }
        for (i, (suffix, settings)) in runs.into_iter().enumerate() {
            let namespace = format!("{}-slow{i}", self.namespace);
            self.declare_serve_namespace(&namespace, &settings).await?;
            let mut subs = Vec::new();
            for org in many_a.iter().chain(&many_c).chain(&one) {
                subs.push(subscription(org, &self.receiver.url(0))?);
            }
            let serve = self.start_serve(&namespace, &settings, &subs).await?;
            let cases = [
                (
                    "slow-receivers-100x100ms",
                    &many_a,
                    100,
                    self.cli.slow_many_events,
                ),
                (
                    "slow-receivers-1x100ms",
                    &one,
                    100,
                    self.cli.slow_one_events,
                ),
                (
                    "slow-receivers-100x10ms",
                    &many_c,
                    10,
                    self.cli.slow_fast_events,
                ),
            ];
            for (name, orgs, answer_ms, n) in cases {
                let name = format!("{name}{suffix}");
                let answer = Duration::from_millis(answer_ms);
                eprintln!(
                    "{name}: {n} events over {} webhook(s) answering in {answer_ms} ms",
                    orgs.len()
                );
                let tally =
                    Arc::new(Tally::new(n, 1, Mode::Ok, Instant::now()).answering_after(answer));
                self.receiver.count_into(tally.clone());
                let source = Source::connect(&self.cli.amqp_url, &namespace).await?;
                let counted_before = counters(self.serves[serve].api()).await;
                let measuring = self.measure(serve);
                let sampler =
                    InFlightSampler::start(self.receiver.load().clone(), tally.clone()).await;
                let publish_secs = source
                    .publish_spread(
                        |seq| orgs[seq % orgs.len()].as_str(),
                        &tally,
                        0..n,
                        self.cli.confirm_window,
                        None,
                    )
                    .await?;
                self.await_deliveries(serve, &tally).await?;
                let (cpu, (rss_max, rss_end)) = measuring.finish();
                let peak = self.receiver.load().peak();
                let median = sampler.median_settled(tally.expected()).await;
                source.close().await;
                let counted = counters(self.serves[serve].api()).await;
                let mut r = result(&name, &tally, cpu, "deliveries/s");
                r.notes
                    .push(counted_since(counted_before.as_deref(), counted.as_deref()));
                r.publish_secs = Some(publish_secs);
                r.serve_rss_max_mib = rss_max;
                r.serve_rss_end_mib = rss_end;
                let secs = answer.as_secs_f64();
                let receivers_cap = MAX_HELD as f64 / secs;
                let slots = settings.concurrency.min(if orgs.len() == 1 {
                    settings.per_endpoint_concurrency
                } else {
                    usize::MAX
                });
                let slots_cap = slots as f64 / secs;
                r.setup = format!(
                    "{n} events spread over {} webhook(s) (one org each) answering 200 {answer_ms} ms after each request arrives (the receiver holds up to {MAX_HELD}), published as fast as the confirm window allows; {}; first publish to last request's arrival",
                    orgs.len(),
                    if i == 0 {
                        "serve on the shipped defaults"
                    } else {
                        "serve on the bench's settings"
                    },
                );
                r.notes.push(format!(
                    "receivers' capacity {receivers_cap:.0}/s ({MAX_HELD} in flight / {answer_ms} ms); serve's slots {slots_cap:.0}/s ({slots} in flight / {answer_ms} ms); in flight at the receiver: peak {peak}, median {median} over the middle 80 %"
                ));
                if i == 0 {
                    let goal = if orgs.len() == 1 {
                        let bound = receivers_cap.min(slots_cap);
                        let ok = r.per_sec >= 0.8 * bound && r.per_sec >= 500.0;
                        format!(
                            "{:.2} × min(receiver {receivers_cap:.0}/s, ceiling {slots_cap:.0}/s); goal ≥ 0.8 and ≥ 500/s: {}",
                            r.per_sec / bound,
                            met(ok)
                        )
                    } else if answer_ms == 100 {
                        let bound = receivers_cap.min(broker_per_sec);
                        format!(
                            "{:.2} × min(receivers {receivers_cap:.0}/s, broker {broker_per_sec:.0} msg/s); goal ≥ 0.8: {}",
                            r.per_sec / bound,
                            met(r.per_sec >= 0.8 * bound)
                        )
                    } else {
                        format!(
                            "{:.2} × min(receivers {receivers_cap:.0}/s, broker {broker_per_sec:.0} msg/s) (no goal stated)",
                            r.per_sec / receivers_cap.min(broker_per_sec)
                        )
                    };
                    r.notes.push(goal);
                }
                results.push(r);
            }
        }
        Ok(results)
    }

    /// One receiver past its knee, on the shipped defaults: N events queued, then serve
    /// started.
    pub(super) async fn overloaded_receiver(&mut self) -> Result<ScenarioResult> {
        let n = self.cli.overload_events;
        let settings = shipped_defaults();
        let namespace = format!("{}-over", self.namespace);
        self.declare_serve_namespace(&namespace, &settings).await?;
        eprintln!("overloaded-receiver: {n} events queued, then serve started");
        let tally = Arc::new(Tally::new(n, 1, Mode::Ok, Instant::now()).overloaded(OVERLOAD));
        let source = Source::connect(&self.cli.amqp_url, &namespace).await?;
        let publish_secs = source
            .publish_all(OVERLOADED_ORG, &tally, self.cli.confirm_window, None)
            .await?;
        source.close().await;
        self.receiver.count_into(tally.clone());
        let sampler = InFlightSampler::start(self.receiver.load().clone(), tally.clone()).await;
        let subs = [subscription(OVERLOADED_ORG, &self.receiver.url(0))?];
        let serve = self.start_serve(&namespace, &settings, &subs).await?;
        let spawned_at = self.serves[serve].spawned_at;
        let measuring = self.measure(serve);
        self.await_deliveries(serve, &tally).await?;
        let (cpu, (rss_max, rss_end)) = measuring.finish();
        let peak = self.receiver.load().peak();
        let median = sampler.median_settled(tally.expected()).await;
        let counted = counters(self.serves[serve].api()).await;
        let mut r = from_spawn(
            result("overloaded-receiver", &tally, cpu, "deliveries/s"),
            &tally,
            spawned_at,
            publish_secs,
            (rss_max, rss_end),
        );
        r.notes.push(counted_since(Some(&[]), counted.as_deref()));
        let rejected = tally.rejected();
        let attempts = rejected + r.delivered + r.duplicates;
        let wasted = rejected as f64 / (attempts as f64).max(1.0);
        let knee = OVERLOAD.knee as f64;
        let settled = (median as f64 - knee).abs() <= 0.25 * knee;
        r.failed_answers = rejected;
        r.setup = format!(
            "{n} events queued, then serve spawned on the shipped defaults; 1 webhook whose receiver answers 200 after {} ms up to {} in flight, {} ms more per extra one, and 429 with Retry-After: 1 at once past {}; from the spawn to the last receipt",
            OVERLOAD.base.as_millis(),
            OVERLOAD.knee,
            OVERLOAD.step.as_millis(),
            OVERLOAD.reject_past,
        );
        r.notes.push(format!(
            "in flight at the receiver: median {median} over the middle 80 % (knee {}), peak {peak}; {rejected} of {attempts} attempts answered 429 ({:.2} %); goals: within 25 % of the knee {}, < 1 % wasted {}",
            OVERLOAD.knee,
            wasted * 100.0,
            met(settled),
            met(wasted < 0.01),
        ));
        Ok(r)
    }
}
