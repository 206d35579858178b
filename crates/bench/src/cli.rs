//! The bench's command line.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;

use crate::scenario::Scenario;

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
    /// Events queued before serve starts (drain and drain-baseline).
    #[arg(long, default_value_t = 20_000)]
    pub drain_events: usize,
    /// Events of slow-receivers' 100 webhooks answering in 100 ms.
    #[arg(long, default_value_t = 10_000)]
    pub slow_many_events: usize,
    /// Events of slow-receivers' one webhook answering in 100 ms.
    #[arg(long, default_value_t = 2_000)]
    pub slow_one_events: usize,
    /// Events of slow-receivers' 100 webhooks answering in 10 ms.
    #[arg(long, default_value_t = 20_000)]
    pub slow_fast_events: usize,
    /// Events queued for the overloaded receiver.
    #[arg(long, default_value_t = 3_000)]
    pub overload_events: usize,
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
    /// attempt-log: webhooks filled to their cap of attempts.
    #[arg(long, default_value_t = 250)]
    pub log_webhooks: usize,
    /// attempt-log: the attempts each of them keeps (`store.attempts_per_webhook`'s default).
    #[arg(long, default_value_t = 1_000)]
    pub log_per_webhook: usize,
    /// attempt-log: the attempts of the one webhook with a long log.
    #[arg(long, default_value_t = 200_000)]
    pub log_big: usize,
    /// attempt-log: kept bodies of 1 KiB (`store.payload_max_bytes` is set to what they take).
    #[arg(long, default_value_t = 50_000)]
    pub log_payloads: usize,
    /// attempt-log: seconds serve idles before its idle RSS is read (past the first prune
    /// of the attempt log, 60 s after start).
    #[arg(long, default_value_t = 70)]
    pub log_idle_secs: u64,
    /// attempt-log: requests of each kind of listing timed.
    #[arg(long, default_value_t = 50)]
    pub log_requests: usize,
    /// attempt-log: environment variables for serve (`NAME=VALUE`, comma-separated), to
    /// compare allocator settings.
    #[arg(long, value_delimiter = ',')]
    pub log_env: Vec<String>,
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
    /// store-size: the sizes measured, webhooks created through the Writer for each.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    pub store_sizes: Vec<usize>,
    /// store-size: webhooks also created through a running serve's API (0: none).
    #[arg(long, default_value_t = 1_000)]
    pub store_size_api: usize,
    /// store-size: creates in flight, as concurrent API clients would have them.
    #[arg(long, default_value_t = 64)]
    pub store_size_window: usize,
    /// store-size: seconds serve idles on the store before its idle RSS is read.
    #[arg(long, default_value_t = 10)]
    pub store_size_idle_secs: u64,
    /// Lookups the store scenario (and store-size) times.
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
    pub fn apply_smoke(&mut self) {
        if self.smoke {
            self.events = self.events.min(300);
            self.rate = self.rate.min(200.0);
            self.latency_secs = self.latency_secs.min(2);
            self.memory_secs = self.memory_secs.min(2);
            self.fairness_secs = self.fairness_secs.min(2);
            self.parked = self.parked.min(300);
            self.drain_events = self.drain_events.min(300);
            self.slow_many_events = self.slow_many_events.min(300);
            self.slow_one_events = self.slow_one_events.min(200);
            self.slow_fast_events = self.slow_fast_events.min(300);
            self.overload_events = self.overload_events.min(300);
            self.subscriptions = self.subscriptions.min(2_000);
            self.lookups = self.lookups.min(1_000);
            for n in &mut self.store_sizes {
                *n = (*n).min(300);
            }
            self.store_sizes.dedup();
            self.store_size_api = self.store_size_api.min(100);
            self.store_size_idle_secs = self.store_size_idle_secs.min(1);
            self.changes = self.changes.min(20);
            self.rebuild_webhooks = self.rebuild_webhooks.min(300);
            self.rebuild_attempts = self.rebuild_attempts.min(3_000);
            self.log_webhooks = self.log_webhooks.min(20);
            self.log_per_webhook = self.log_per_webhook.min(50);
            self.log_big = self.log_big.min(2_000);
            self.log_payloads = self.log_payloads.min(500);
            self.log_idle_secs = self.log_idle_secs.min(1);
            self.log_requests = self.log_requests.min(3);
        }
    }

    pub fn hookwire_binary(&self) -> Result<PathBuf> {
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
