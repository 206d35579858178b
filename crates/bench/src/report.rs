//! The figures, as one table or as JSON, and the machine they were measured on.

use std::fmt::Write;

use serde::Serialize;

use crate::procfs::CpuSplit;
use crate::serve::ServeSettings;
use crate::store_scenario::StoreResult;
use crate::tally::Percentiles;

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores available to the bench.
    pub cores: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu: String,
    /// RabbitMQ's version (`rabbitmqctl version`).
    pub rabbitmq: String,
    /// Total memory, in GiB.
    pub memory_gib: f64,
}

impl Machine {
    /// Reads what this machine is.
    pub async fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown".into(), |m| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let rabbitmq = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            tokio::process::Command::new("rabbitmqctl")
                .args(["-q", "version"])
                .output(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into());
        Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu,
            rabbitmq,
            memory_gib,
        }
    }
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// The scenario.
    pub name: String,
    /// How it ran (the part of the config that differs between scenarios).
    pub setup: String,
    /// Events published (for `store`: lookups).
    pub events: usize,
    /// Distinct deliveries expected.
    pub expected: u64,
    /// Distinct deliveries counted.
    pub delivered: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// Requests the receiver answered 500 on purpose.
    pub failed_answers: u64,
    /// Requests or messages that belonged to no event of the scenario.
    pub strays: u64,
    /// From the first publish to the last receipt.
    pub secs: f64,
    /// `delivered / secs`.
    pub per_sec: f64,
    /// What `per_sec` counts.
    pub unit: String,
    /// `per_sec` over the msg/s of the baseline just before it.
    pub vs_baseline: Option<f64>,
    /// `per_sec` over fanout1's of the same round (fanout1-replicated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_fanout1: Option<f64>,
    /// p99 less the p99 of the broker alone just before it (`latency`), in ms.
    pub p99_gap_ms: Option<f64>,
    /// Seconds until the last publish confirm.
    pub publish_secs: Option<f64>,
    /// Publish to receipt (for `store`: one lookup).
    pub latency: Option<Percentiles>,
    /// CPU, % of one core, from the first publish to the last receipt.
    pub cpu: Option<CpuSplit>,
    /// serve's largest RSS seen during the scenario, in MiB.
    pub serve_rss_max_mib: Option<f64>,
    /// serve's RSS at the end of the scenario, in MiB.
    pub serve_rss_end_mib: Option<f64>,
    /// The store scenario's own figures.
    pub store: Option<StoreResult>,
    /// Every event was counted, in time.
    pub complete: bool,
    /// Anything else worth knowing.
    pub notes: Vec<String>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// serve's config, in words.
    pub serve_config: String,
    /// serve's config.
    pub serve_settings: ServeSettings,
    /// `/proc/loadavg` (1, 5, 15 min) when the run began.
    pub load_before: String,
    /// `/proc/loadavg` when it ended.
    pub load_after: String,
    /// One entry per scenario.
    pub results: Vec<ScenarioResult>,
    /// fanout1's ratios to baseline over the rounds, when there were several.
    pub fanout1_ratio: Option<Spread>,
    /// latency's p99 gaps to the broker alone over the rounds, when there were several.
    pub p99_gap_ms: Option<Spread>,
    /// Other figures over the rounds: fanout1-replicated's and fanout1-cluster's ratios.
    pub more_spreads: Vec<NamedSpread>,
}

/// A figure over alternating rounds, and what it is.
#[derive(Debug, Clone, Serialize)]
pub struct NamedSpread {
    /// What the figure is.
    pub what: String,
    /// Its values.
    pub spread: Spread,
}

/// One figure over alternating rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Each round's value, in the order they ran.
    pub values: Vec<f64>,
    /// The median: the figure to compare with the bar.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// `figure` of every round of `scenario` (named `scenario` or `scenario #N`), if
    /// there were at least two.
    pub fn of(
        results: &[ScenarioResult],
        scenario: &str,
        figure: impl Fn(&ScenarioResult) -> Option<f64>,
    ) -> Option<Self> {
        let values: Vec<f64> = results
            .iter()
            .filter(|r| r.name.split(" #").next() == Some(scenario))
            .filter_map(figure)
            .collect();
        if values.len() < 2 {
            return None;
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            values,
        })
    }

    fn line(&self, what: &str) -> String {
        let each: Vec<String> = self.values.iter().map(|v| format!("{v:.2}")).collect();
        format!(
            "{what} over {} alternating rounds: median {:.2} (min {:.2}, max {:.2}; in order: {})",
            self.values.len(),
            self.median,
            self.min,
            self.max,
            each.join(", ")
        )
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl ScenarioResult {
    /// A result with nothing measured yet, counted in `unit`.
    pub fn named(name: &str, unit: &str) -> Self {
        Self {
            name: name.into(),
            setup: String::new(),
            events: 0,
            expected: 0,
            delivered: 0,
            duplicates: 0,
            failed_answers: 0,
            strays: 0,
            secs: 0.0,
            per_sec: 0.0,
            unit: unit.into(),
            vs_baseline: None,
            vs_fanout1: None,
            p99_gap_ms: None,
            publish_secs: None,
            latency: None,
            cpu: None,
            serve_rss_max_mib: None,
            serve_rss_end_mib: None,
            store: None,
            complete: false,
            notes: Vec::new(),
        }
    }

    /// serve's CPU per delivered message, in µs.
    pub fn serve_us_per_message(&self) -> Option<f64> {
        self.cpu_us_per_message(self.cpu.and_then(|c| c.serve_pct))
    }

    /// RabbitMQ's CPU per delivered message, in µs.
    pub fn rabbitmq_us_per_message(&self) -> Option<f64> {
        self.cpu_us_per_message(self.cpu.and_then(|c| c.rabbitmq_pct))
    }

    /// CPU time per delivered message, in µs, of a process with `pct` % of one core: what
    /// each message costs, which other load on the machine does not change much.
    fn cpu_us_per_message(&self, pct: Option<f64>) -> Option<f64> {
        let delivered = self.delivered as f64;
        pct.filter(|_| delivered > 0.0)
            .map(|pct| pct / 100.0 * self.secs * 1e6 / delivered)
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

impl Report {
    /// The Markdown table and the notes under it.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Machine: {} cores, {}, {:.0} GiB; RabbitMQ {}; load average before/after: {} / {}",
            m.cores, m.cpu, m.memory_gib, m.rabbitmq, self.load_before, self.load_after
        );
        let _ = writeln!(
            out,
            "CPU columns: % of one core ({} % = every core) from the first publish to the last receipt; \
             receiver = its own threads in the bench process; bench = publisher (and baseline's consumer); \
             other = the rest of the machine",
            m.cores * 100
        );
        let _ = writeln!(out, "Command: {}", self.command);
        let _ = writeln!(out, "hookwire serve config: {}", self.serve_config);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| scenario | events | delivered | s | per s | × baseline | p50 ms | p99 ms | p99.9 ms | CPU % serve | CPU % RabbitMQ | CPU % receiver | CPU % bench | CPU % other | serve CPU µs/msg | RabbitMQ CPU µs/msg | serve RSS MiB max/end | ok |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in &self.results {
            let lat = r.latency.unwrap_or_default();
            let has_lat = r.latency.is_some();
            let cpu = r.cpu.unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.0} {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |",
                r.name,
                r.events,
                r.delivered,
                r.secs,
                r.per_sec,
                r.unit,
                opt(r.vs_baseline, 2),
                opt(has_lat.then_some(lat.p50_ms), 3),
                opt(has_lat.then_some(lat.p99_ms), 3),
                opt(has_lat.then_some(lat.p999_ms), 3),
                opt(r.cpu.and(cpu.serve_pct), 0),
                opt(r.cpu.and(cpu.rabbitmq_pct), 0),
                opt(r.cpu.map(|c| c.receiver_pct), 0),
                opt(r.cpu.map(|c| c.bench_pct), 0),
                opt(r.cpu.and(cpu.other_pct), 0),
                opt(r.cpu_us_per_message(r.cpu.and(cpu.serve_pct)), 0),
                opt(r.cpu_us_per_message(r.cpu.and(cpu.rabbitmq_pct)), 0),
                opt(r.serve_rss_max_mib, 1),
                opt(r.serve_rss_end_mib, 1),
                if r.complete { "yes" } else { "NO" },
            );
        }
        let _ = writeln!(out);
        let spreads = [
            (&self.fanout1_ratio, "fanout1 × baseline"),
            (&self.p99_gap_ms, "latency p99 − baseline-latency p99, ms,"),
        ];
        for (spread, what) in spreads {
            if let Some(spread) = spread {
                let _ = writeln!(out, "{}", spread.line(what));
                let _ = writeln!(out);
            }
        }
        for more in &self.more_spreads {
            let _ = writeln!(out, "{}", more.spread.line(&more.what));
            let _ = writeln!(out);
        }
        for r in &self.results {
            let _ = writeln!(out, "- {}: {}", r.name, r.setup);
            for note in &r.notes {
                let _ = writeln!(out, "  - {note}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, ratio: Option<f64>) -> ScenarioResult {
        ScenarioResult {
            events: 1,
            expected: 1,
            delivered: 1,
            secs: 1.0,
            per_sec: 1.0,
            vs_baseline: ratio,
            complete: true,
            ..ScenarioResult::named(name, "deliveries/s")
        }
    }

    fn ratios(results: &[ScenarioResult]) -> Option<Spread> {
        Spread::of(results, "fanout1", |r| r.vs_baseline)
    }

    #[test]
    fn a_spread_is_the_median_of_one_scenario_s_rounds() {
        let results = [
            result("fanout1 #1", Some(0.9)),
            result("fanout1 #2", Some(0.7)),
            result("fanout10", Some(2.0)),
            result("fanout1 #3", Some(0.8)),
            result("fanout1 #4", Some(1.1)),
        ];
        let spread = ratios(&results).expect("four rounds");
        assert_eq!(spread.values, [0.9, 0.7, 0.8, 1.1]);
        assert!((spread.median - 0.85).abs() < 1e-9, "{}", spread.median);
        assert_eq!((spread.min, spread.max), (0.7, 1.1));
        assert!((ratios(&results[..3]).expect("two rounds").median - 0.8).abs() < 1e-9);
    }

    #[test]
    fn one_round_is_no_spread() {
        assert!(ratios(&[result("fanout1", Some(0.9))]).is_none());
        assert!(ratios(&[result("fanout1 #1", None), result("fanout1 #2", None)]).is_none());
    }
}
