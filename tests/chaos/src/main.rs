//! hookwire's chaos runner: real `hookwire serve` children, signature-verifying loopback
//! receivers and a confirmed producer, disturbed on purpose (SIGKILL, broker restarts,
//! receiver outages, poison messages, store crashes). A ledger of every (event,
//! subscription) pair proves that nothing is lost.
//!
//! - [`broker`]: queue inspection, `rabbitmqctl` actions, the guard that restarts the app.
//! - [`serve`]: one `serve` child with its config, store, namespace and API.
//! - [`sink`]: the subscribers.
//! - [`publish`]: good and broken messages, and a publisher that rides out restarts.
//! - [`ledger`]: the expected pairs, the tally and the report.
//! - [`scenarios`]: the scenarios of one node.
//! - [`cluster`]: three replicated nodes, killed and wiped in turn.
//! - [`broker_cluster`]: three replicated nodes on a three-node RabbitMQ cluster of the
//!   runner's own, whose broker nodes are stopped in turn.
//! - [`soak`]: all of them in turn for a long time, with [`resources`] sampled.
//!
//! `cargo build --release -p hookwire -p hookwire-chaos`, then
//! `target/release/hookwire-chaos SCENARIO [--events N]`, or
//! `target/release/hookwire-chaos soak [--duration 2h] [--rate 50]`.

mod broker;
mod broker_cluster;
mod cluster;
mod ledger;
mod publish;
mod receiver_log;
mod resources;
mod scenarios;
mod serve;
mod settle;
mod sink;
mod soak;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use hookwire_core::Config;

use crate::broker::AppState;
use crate::ledger::Outcome;

/// Which scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// SIGKILL serve at random moments while events flow; restart it each time.
    Kill,
    /// Stop and start the broker app, then close hookwire's connections.
    BrokerRestart,
    /// A receiver down for several tiers, then for longer than the schedule; replay.
    Outage,
    /// One message in ten breaks the wire contract.
    Poison,
    /// SIGKILL serve during a burst of webhook creations and deletions.
    StoreCrash,
    /// Three replicated nodes on one namespace, SIGKILLed in turn, one with its data
    /// directory wiped.
    Cluster,
    /// The ledger's self-test: one event expected but never published. On its own it
    /// must FAIL with `1 lost`; in `all` and `ci` that failure is required.
    DropOne,
    /// Three replicated nodes on a three-node RabbitMQ cluster of the runner's own: the
    /// broker node leading the events queue stopped and started, a serve node SIGKILLed,
    /// another broker node stopped and started. Not part of `ci`.
    BrokerCluster,
    /// Every scenario above, at the size given.
    All,
    /// The short variant of every scenario that tests/run runs (a few minutes).
    Ci,
    /// Every disturbance above in turn, at a modest rate for `--duration`, with serve's
    /// RSS and open fds sampled. Not part of `all` or `ci`.
    Soak,
}

#[derive(Debug, Parser)]
#[command(
    about = "Proves that hookwire loses nothing under crashes, broker restarts, outages and poison."
)]
struct Args {
    /// The scenario.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Events to publish (store-crash: API changes per round, roughly).
    #[arg(long)]
    events: Option<usize>,
    /// SIGKILLs in `kill` and rounds in `store-crash`.
    #[arg(long, default_value_t = 6)]
    kills: u32,
    /// soak: how long to publish and disturb (`90s`, `20m`, `2h`); the drain comes after.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// soak: events published per second.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rate: u32,
    /// soak: one message in this many is broken, as in `poison`; 0 for none.
    #[arg(long, default_value_t = 10)]
    broken_every: usize,
    /// soak: time between two disturbances (kill, connection close, outage, broker
    /// restart, in turn).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// The broker; the test broker by default.
    #[arg(
        long,
        env = "HOOKWIRE_TEST_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

/// What every scenario shares: the binary, the broker, and what to clean up.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The `hookwire` binary.
    pub binary: PathBuf,
    /// The broker.
    pub amqp_url: String,
    /// Whether the broker app is stopped by us.
    pub app: AppState,
    /// A RabbitMQ cluster's node URLs, which `serve` is given as `amqp.urls`; empty on
    /// the single test broker.
    pub cluster_urls: Vec<String>,
    namespaces: Arc<Mutex<Vec<Config>>>,
}

impl Ctx {
    /// The context of a scenario on a RabbitMQ cluster of its own: its namespaces go with
    /// the cluster, so none is registered for deletion on the test broker.
    pub fn on_cluster(&self, urls: Vec<String>) -> Self {
        Self {
            binary: self.binary.clone(),
            amqp_url: urls[0].clone(),
            app: AppState::default(),
            cluster_urls: urls,
            namespaces: Arc::default(),
        }
    }

    /// Remembers a namespace for deletion at the end, whatever happens.
    pub fn register(&self, config: &Config) {
        self.namespaces.lock().expect("lock").push(config.clone());
    }

    /// Deletes every registered namespace's queues and exchanges.
    async fn cleanup(&self) {
        let configs: Vec<Config> = std::mem::take(&mut *self.namespaces.lock().expect("lock"));
        if configs.is_empty() {
            return;
        }
        let mut connection = None;
        for _ in 0..60 {
            if let Ok(c) = hookwire_amqp::connect(&self.amqp_url, "hookwire-chaos-cleanup").await {
                connection = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let Some(connection) = connection else {
            eprintln!(
                "chaos: cannot reach the broker to delete the namespaces; tests/sweep-namespaces will"
            );
            return;
        };
        for config in configs {
            let result = async {
                let channel = connection.create_channel().await?;
                hookwire_amqp::Topology::of_config(&config)?
                    .delete(&channel)
                    .await?;
                let _ = channel.close(200, "deleted".into()).await;
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = result {
                eprintln!("chaos: deleting namespace {}: {e:#}", config.amqp.namespace);
            }
        }
        let _ = connection.close(200, "bye".into()).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = std::env::current_exe()?.with_file_name("hookwire");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build with `cargo build --release -p hookwire -p hookwire-chaos`",
        binary.display()
    );
    let ctx = Ctx {
        binary,
        amqp_url: args.amqp_url.clone(),
        app: AppState::default(),
        cluster_urls: Vec::new(),
        namespaces: Arc::default(),
    };
    let mut outcomes = Vec::new();
    let result = tokio::select! {
        r = run(&ctx, &args, &mut outcomes) => r,
        () = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    // The scenario's guards already ran (its future is done or dropped); make sure.
    ctx.app.restore();
    ctx.cleanup().await;
    // The scenarios that finished, then the verdict; an aborted scenario fails it.
    let (text, pass) = ledger::report(&outcomes);
    match result {
        Ok(()) => print!("{text}"),
        Err(e) => {
            let mut verdict = format!("FAIL: {e:#}");
            for line in text.lines() {
                if let Some(more) = line.strip_prefix("FAIL: ") {
                    verdict.push_str("; ");
                    verdict.push_str(more);
                } else if line != "PASS" {
                    println!("{line}");
                }
            }
            println!("{verdict}");
            std::process::exit(1);
        }
    }
    if !pass {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(ctx: &Ctx, args: &Args, out: &mut Vec<Outcome>) -> Result<()> {
    let n = args.events;
    let kills = args.kills.max(5);
    let one = |s: Scenario| -> bool { args.scenario == s || args.scenario == Scenario::All };
    if args.scenario == Scenario::Soak {
        // At least one whole cycle of disturbances, each with room to settle.
        anyhow::ensure!(
            args.every >= Duration::from_secs(15) && args.duration >= 4 * args.every,
            "soak needs --every of at least 15s and --duration of at least 4 × --every"
        );
        let soak = soak::Soak {
            duration: args.duration,
            rate: args.rate,
            every: args.every,
            broken_every: args.broken_every,
        };
        out.push(soak::soak(ctx, soak).await.context("soak")?);
        return Ok(());
    }
    if args.scenario == Scenario::DropOne {
        let mut o = scenarios::drop_one(ctx, n.unwrap_or(50))
            .await
            .context("drop-one")?;
        // On its own, the ledger's verdict is reported as it is: FAIL, 1 lost.
        o.must_lose = None;
        out.push(o);
        return Ok(());
    }
    if args.scenario == Scenario::Ci {
        // First: if the ledger cannot report a loss, no figure below means anything.
        out.push(scenarios::drop_one(ctx, 50).await.context("drop-one")?);
        out.push(
            scenarios::kill(ctx, n.unwrap_or(1000), 5)
                .await
                .context("kill")?,
        );
        out.push(
            scenarios::poison(ctx, n.unwrap_or(500))
                .await
                .context("poison")?,
        );
        out.push(
            scenarios::outage(ctx, n.unwrap_or(200))
                .await
                .context("outage")?,
        );
        out.push(
            scenarios::store_crash(ctx, n.unwrap_or(300), 3)
                .await
                .context("store-crash")?,
        );
        out.push(
            cluster::cluster(ctx, n.unwrap_or(600))
                .await
                .context("cluster")?,
        );
        out.push(
            scenarios::broker_restart(ctx, n.unwrap_or(1000))
                .await
                .context("broker-restart")?,
        );
        return Ok(());
    }
    if args.scenario == Scenario::All {
        out.push(scenarios::drop_one(ctx, 50).await.context("drop-one")?);
    }
    if one(Scenario::Kill) {
        out.push(
            scenarios::kill(ctx, n.unwrap_or(2000), kills)
                .await
                .context("kill")?,
        );
    }
    if one(Scenario::Poison) {
        out.push(
            scenarios::poison(ctx, n.unwrap_or(1000))
                .await
                .context("poison")?,
        );
    }
    if one(Scenario::Outage) {
        out.push(
            scenarios::outage(ctx, n.unwrap_or(600))
                .await
                .context("outage")?,
        );
    }
    if one(Scenario::StoreCrash) {
        out.push(
            scenarios::store_crash(ctx, n.unwrap_or(500), args.kills.max(3))
                .await
                .context("store-crash")?,
        );
    }
    if one(Scenario::Cluster) {
        out.push(
            cluster::cluster(ctx, n.unwrap_or(3000))
                .await
                .context("cluster")?,
        );
    }
    if one(Scenario::BrokerCluster) {
        out.push(
            broker_cluster::broker_cluster(ctx, n.unwrap_or(3000))
                .await
                .context("broker-cluster")?,
        );
    }
    if one(Scenario::BrokerRestart) {
        out.push(
            scenarios::broker_restart(ctx, n.unwrap_or(2000))
                .await
                .context("broker-restart")?,
        );
    }
    Ok(())
}

/// Ctrl-C or SIGTERM: the scenario is dropped (killing serve, restarting the broker app)
/// and the namespaces are deleted.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("chaos: interrupted; cleaning up");
}
