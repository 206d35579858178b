//! `hookwire`: the one binary. `serve` runs the daemon; the other commands are tools.

mod config;
mod serve;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hookwire_core::config::{AmqpConfig, CatalogConfig};
use hookwire_core::{Catalog, Secret};
use hookwire_producer::{OutgoingEvent, Producer, Topology};

#[derive(Parser, Debug)]
#[command(
    name = "hookwire",
    version,
    about = "Webhook delivery daemon: RabbitMQ in, signed HTTP out."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the delivery daemon.
    Serve {
        /// A TOML file layered over the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Publish one event, checked against the catalog, and wait for the broker's confirm.
    Publish {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The organization that owns the event.
        #[arg(long)]
        org: String,
        /// The event type, e.g. report_run_completed.
        #[arg(long)]
        event: String,
        /// The event's fields as a JSON object, e.g. '{"report_run_url":"https://…"}'.
        #[arg(long)]
        data: String,
        /// The event's unique id; a UUIDv7 when omitted.
        #[arg(long)]
        id: Option<String>,
    },
    /// Declare or delete a namespace's exchanges and queues.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Check a delivery the way a receiver does: the body on stdin, the headers as flags.
    Verify {
        /// The webhook's `whsec_…` secret.
        #[arg(long)]
        secret: String,
        /// The `webhook-id` header.
        #[arg(long)]
        id: String,
        /// The `webhook-timestamp` header.
        #[arg(long)]
        timestamp: u64,
        /// The `webhook-signature` header.
        #[arg(long)]
        signature: String,
        /// Refuse timestamps further than this from now (Standard Webhooks: 5 minutes).
        #[arg(long, default_value_t = 300)]
        tolerance_secs: u64,
    },
}

#[derive(Subcommand, Debug)]
enum TopologyAction {
    /// Declare every exchange and queue (idempotent).
    Declare {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides amqp.namespace.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Delete every exchange and queue of the namespace, messages included.
    Delete {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides amqp.namespace.
        #[arg(long)]
        namespace: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config } => serve::serve(config.as_deref()).await,
        Command::Publish {
            config,
            org,
            event,
            data,
            id,
        } => {
            let figment = config::layers(config.as_deref())?;
            let amqp = amqp_section(&figment, None)?;
            let catalog = catalog(&config::extract(&figment, "catalog")?)?;
            let data = match serde_json::from_str(&data).context("--data is not JSON")? {
                serde_json::Value::Object(map) => map,
                _ => bail!("--data must be a JSON object"),
            };
            let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let event = OutgoingEvent {
                org,
                event_type: event,
                id: id.clone(),
                data,
            };
            let producer =
                Producer::connect(&amqp.url, &amqp.namespace, "hookwire-publish", catalog)
                    .await
                    .with_context(|| {
                        format!("cannot connect to the broker at {}", redact(&amqp.url))
                    })?;
            producer.publish(&event).await?;
            producer.close().await?;
            println!("{id}");
            Ok(())
        }
        Command::Topology { action } => {
            let (config, namespace, delete) = match action {
                TopologyAction::Declare { config, namespace } => (config, namespace, false),
                TopologyAction::Delete { config, namespace } => (config, namespace, true),
            };
            let figment = config::layers(config.as_deref())?;
            let amqp = amqp_section(&figment, namespace)?;
            let topology = Topology::new(&amqp.namespace, tiers(&figment)?);
            let connection = hookwire_producer::connect(&amqp.url, "hookwire-topology")
                .await
                .with_context(|| {
                    format!("cannot connect to the broker at {}", redact(&amqp.url))
                })?;
            let channel = connection.create_channel().await?;
            if delete {
                topology.delete(&channel).await?;
                println!("deleted namespace {}", amqp.namespace);
            } else {
                topology.declare(&channel).await?;
                println!(
                    "declared namespace {} ({} retry tiers)",
                    amqp.namespace,
                    topology.tiers.len()
                );
            }
            connection.close(200, "done".into()).await?;
            Ok(())
        }
        Command::Verify {
            secret,
            id,
            timestamp,
            signature,
            tolerance_secs,
        } => {
            let secret = Secret::parse(&secret)?;
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("cannot read the body from stdin")?;
            let now = hookwire_core::now_ms() / 1000;
            if now.abs_diff(timestamp) > tolerance_secs {
                bail!("timestamp {timestamp} is more than {tolerance_secs}s from now ({now})");
            }
            secret.verify(&id, timestamp, &body, &signature)?;
            println!("ok");
            Ok(())
        }
    }
}

/// `[amqp]` alone: `topology` and `publish` need nothing else (no secrets key, no store).
fn amqp_section(figment: &figment::Figment, namespace: Option<String>) -> Result<AmqpConfig> {
    let mut amqp: AmqpConfig = config::extract(figment, "amqp")?;
    if let Some(ns) = namespace {
        amqp.namespace = ns;
    }
    amqp.validate()?;
    Ok(amqp)
}

/// The tier delays: the retry schedule plus the deferral tier.
fn tiers(figment: &figment::Figment) -> Result<Vec<Duration>> {
    let schedule: Vec<humantime_serde::Serde<Duration>> =
        config::extract(figment, "delivery.retry_schedule")?;
    let defer: humantime_serde::Serde<Duration> = config::extract(figment, "delivery.defer_delay")?;
    Ok(schedule
        .into_iter()
        .chain([defer])
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

/// The embedded catalog, or the one `catalog.path` names.
pub fn catalog(section: &CatalogConfig) -> Result<Catalog> {
    if section.path.as_os_str().is_empty() {
        return Ok(Catalog::builtin());
    }
    let text = std::fs::read_to_string(&section.path)
        .with_context(|| format!("catalog.path: cannot read {}", section.path.display()))?;
    Catalog::from_toml(&text).context("catalog.path")
}

/// A broker URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
