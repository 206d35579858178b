//! hookwire-bench: measures hookwire's delivery pipeline against the broker's own limit.
//!
//! - `baseline`: RabbitMQ alone (publish with confirms + consume with acks, at once).
//! - `fanout1`, `fanout10`, `fanout-curve`, `latency`, `retries`: `hookwire serve` (a
//!   release build, as a child process) delivering to an in-process receiver.
//! - `drain`, `slow-receivers`, `overloaded-receiver`: serve on the shipped defaults with
//!   a backlog queued before it starts, receivers that answer slowly, and one overloaded
//!   past a knee (against RabbitMQ alone draining the same backlog, and the receivers'
//!   capacity).
//! - `memory`: serve's RSS at 1,000 events/s and with many deliveries parked in a tier.
//! - `fanout1-replicated`, `memory-replicated`, `propagation`, `rebuild`: the same with
//!   the store replicated through the namespace's streams, several nodes, and a node
//!   rebuilt from the streams.
//! - `store`: `Store::subscribers` with many subscriptions in sled.
//! - `store-size`: webhooks created through the store's writer (and the API): the create
//!   rate, disk against `store export`, lookups, and serve's readiness and RSS on it.
//! - `--cluster`: baseline and fanout1 also against a three-node RabbitMQ cluster.
//!
//! Everything runs on loopback in a namespace of its own (`hwbench-<random>`), deleted at
//! the end. Build with `cargo build --release --workspace --all-targets`.

mod amqp;
mod cli;
mod cluster;
mod procfs;
mod receiver;
mod report;
mod scenario;
mod scenarios;
mod serve;
mod store_scenario;
mod tally;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::Cli;
use crate::scenario::Scenario;

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
