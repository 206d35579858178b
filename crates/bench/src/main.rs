//! hookwire-bench: measures hookwire's delivery pipeline against the broker's own limit.
//!
//! - `baseline`: RabbitMQ alone (publish with confirms + consume with acks, at once).
//! - `fanout1`, `fanout10`, `latency`, `retries`: `hookwire serve` (a release build, as a
//!   child process) delivering to an in-process receiver.
//! - `memory`: serve's RSS at 1,000 events/s and with many deliveries parked in a tier.
//! - `fanout1-replicated`, `memory-replicated`, `propagation`, `rebuild`: the same with
//!   the store replicated through the namespace's streams, several nodes, and a node
//!   rebuilt from the streams.
//! - `store`: `Store::subscribers` with many subscriptions in sled.
//! - `--cluster`: baseline and fanout1 also against a three-node RabbitMQ cluster.
//!
//! Everything runs on loopback in a namespace of its own (`hwbench-<random>`), deleted at
//! the end. Build with `cargo build --release --workspace --all-targets`.

mod amqp;
mod cluster;
mod procfs;
mod receiver;
mod report;
mod scenarios;
mod serve;
mod store_scenario;
mod tally;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::scenarios::Scenario;

/// Measure hookwire against RabbitMQ's own limit, on loopback.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Events per throughput scenario (baseline uses at least 20,000 unless --smoke).
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Rounds of baseline, fanout1, baseline-latency and latency (those selected): each
    /// hookwire figure is compared with the broker alone just before it, and the report
    /// gives the median over the rounds. On a machine whose broker speed wanders from
    /// minute to minute, one pair is a sample, not a figure.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// CI smoke test: every scenario on a few hundred events; fails unless each completes
    /// and counts every event. No timing is checked.
    #[arg(long)]
    pub smoke: bool,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// Events per second of the latency scenario (and of the memory scenario's steady load).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of the latency scenario.
    #[arg(long, default_value_t = 30)]
    pub latency_secs: u64,
    /// Seconds of the memory scenario's steady load: long enough for attempt-log prunes
    /// (every 60 s) to count.
    #[arg(long, default_value_t = 180)]
    pub memory_secs: u64,
    /// Seconds both organizations of the fairness scenario publish.
    #[arg(long, default_value_t = 20)]
    pub fairness_secs: u64,
    /// How long the fairness scenario's receivers take to answer, in ms; the rates
    /// follow (the loud organization sends 1.1 × what the slots carry at this pace), and
    /// so does the bound stated for the quiet one's p99 (one such answer). Longer on a
    /// slow build or a busy machine, so that the slots, not the CPU, are what is short.
    #[arg(long, default_value_t = 100)]
    pub fairness_answer_ms: u64,
    /// Deliveries the memory scenario parks in a retry tier.
    #[arg(long, default_value_t = 1_000_000)]
    pub parked: usize,
    /// Changes (webhook creates and updates, alternating) the propagation scenario makes
    /// through node 1 and waits to see on node 3.
    #[arg(long, default_value_t = 200)]
    pub changes: usize,
    /// Webhooks the rebuild scenario puts in the changes stream before a node with an
    /// empty data directory rebuilds from it.
    #[arg(long, default_value_t = 10_000)]
    pub rebuild_webhooks: usize,
    /// Attempt records the rebuild scenario puts in the attempts stream (batches of
    /// 1,000, spread over the webhooks) before the node rebuilds; 0: none.
    #[arg(long, default_value_t = 1_000_000)]
    pub rebuild_attempts: usize,
    /// Also run baseline and fanout1 (those selected) against a three-node RabbitMQ
    /// cluster of the bench's own (`tests/cluster/rabbitmq-cluster`), in every round
    /// right after the single broker's: `baseline-cluster` and `fanout1-cluster`.
    #[arg(long)]
    pub cluster: bool,
    /// The cluster's AMQP ports are this + 1 … + 3.
    #[arg(long, default_value_t = 5690)]
    pub cluster_port_base: u16,
    /// Subscriptions the store scenario puts in sled.
    #[arg(long, default_value_t = 1_000_000)]
    pub subscriptions: usize,
    /// Lookups the store scenario times.
    #[arg(long, default_value_t = 20_000)]
    pub lookups: usize,
    /// serve's `delivery.concurrency`.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// serve's `amqp.prefetch`, and the baseline consumer's.
    #[arg(long, default_value_t = 250)]
    pub prefetch: u16,
    /// Unconfirmed publishes in flight (baseline and every hookwire scenario).
    #[arg(long, default_value_t = 256)]
    pub confirm_window: usize,
    /// Threads of the receiver.
    #[arg(long, default_value_t = 1)]
    pub receiver_threads: usize,
    /// The broker.
    #[arg(
        long,
        env = "HOOKWIRE_AMQP__URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Namespaces are `<prefix>-<random>`. tests/run's smoke test passes `hwtest-bench`,
    /// so that `tests/sweep-namespaces` deletes what an interrupted run left behind.
    #[arg(long, default_value = "hwbench")]
    pub namespace_prefix: String,
    /// The hookwire binary (default: `hookwire` next to this program).
    #[arg(long)]
    pub hookwire: Option<PathBuf>,
}

impl Cli {
    fn apply_smoke(&mut self) {
        if self.smoke {
            self.events = self.events.min(300);
            self.rate = self.rate.min(200.0);
            self.latency_secs = self.latency_secs.min(2);
            self.memory_secs = self.memory_secs.min(2);
            self.fairness_secs = self.fairness_secs.min(2);
            self.parked = self.parked.min(300);
            self.subscriptions = self.subscriptions.min(2_000);
            self.lookups = self.lookups.min(1_000);
            self.changes = self.changes.min(20);
            self.rebuild_webhooks = self.rebuild_webhooks.min(300);
            self.rebuild_attempts = self.rebuild_attempts.min(3_000);
        }
    }

    fn hookwire_binary(&self) -> Result<PathBuf> {
        let path = match &self.hookwire {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("hookwire"),
        };
        if !path.is_file() {
            bail!(
                "no hookwire binary at {}: build both with \
                 `cargo build --release --workspace --all-targets`, or pass --hookwire",
                path.display()
            );
        }
        Ok(path)
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    cli.apply_smoke();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: a scenario did not complete or did not count every event");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<bool> {
    let selected = if cli.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        cli.scenarios.clone()
    };
    let needs_serve = selected.iter().any(|s| s.needs_serve());
    let binary = if needs_serve {
        Some(cli.hookwire_binary()?)
    } else {
        None
    };
    let machine = report::Machine::read().await;
    let load_before = report::loadavg();
    let mut bench = scenarios::Bench::new(cli.clone(), binary)
        .await
        .context("cannot set the bench up")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        outcome = bench.run(&selected) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
    };
    // Whatever happened, the namespaces (and --cluster's nodes) go.
    bench.cleanup().await;
    let results = outcome?;
    let report = report::Report {
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        serve_config: bench.settings.describe(),
        serve_settings: bench.settings.clone(),
        load_before,
        load_after: report::loadavg(),
        fanout1_ratio: report::Spread::of(&results, "fanout1", |r| r.vs_baseline),
        p99_gap_ms: report::Spread::of(&results, "latency", |r| r.p99_gap_ms),
        more_spreads: [
            (
                "fanout1-replicated",
                "fanout1-replicated × baseline",
                (|r: &report::ScenarioResult| r.vs_baseline)
                    as fn(&report::ScenarioResult) -> Option<f64>,
            ),
            ("fanout1-replicated", "fanout1-replicated × fanout1", |r| {
                r.vs_fanout1
            }),
            (
                "fanout1-cluster",
                "fanout1-cluster × baseline-cluster",
                |r| r.vs_baseline,
            ),
        ]
        .into_iter()
        .filter_map(|(scenario, what, figure)| {
            report::Spread::of(&results, scenario, figure).map(|spread| report::NamedSpread {
                what: what.into(),
                spread,
            })
        })
        .collect(),
        results,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(report.results.iter().all(|r| r.complete))
}
