//! The footprint scenarios: serve's memory at a steady rate and with deliveries parked,
//! and the store's lookups in-process.

use super::runs::{deadline_for, result};
use super::*;

impl Bench {
    pub(super) async fn memory(&mut self) -> Result<Vec<ScenarioResult>> {
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

    pub(super) async fn store(&self) -> Result<ScenarioResult> {
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
            vs_fanout1: None,
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
}

fn opt(mib: Option<f64>) -> String {
    mib.map_or_else(|| "-".into(), |m| format!("{m:.1}"))
}

pub(super) fn opt_mib(bytes: Option<u64>) -> String {
    opt(bytes.map(|b| b as f64 / (1 << 20) as f64))
}

/// Samples serve's RSS every 100 ms while a scenario runs.
pub(super) struct RssSampler {
    pid: u32,
    max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub(super) fn start(pid: u32) -> Self {
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
    pub(super) fn stop(self) -> (Option<f64>, Option<f64>) {
        self.task.abort();
        let end = procfs::rss_bytes(self.pid);
        let max = self.max.load(Ordering::Relaxed).max(end.unwrap_or(0));
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        ((max > 0).then(|| mib(max)), end.map(mib))
    }
}
