//! `hookwire`: the one binary. `serve` runs the daemon; `webhooks`, `event-types`,
//! `attempts` and `dead-letters` are clients of its admin API; the other commands are tools.

mod allocator;
mod client;
mod config;
mod operations;
mod runtime;
mod serve;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hookwire_amqp::{OutgoingEvent, Producer, Topology};
use hookwire_core::config::{AmqpConfig, CatalogConfig};
use hookwire_core::{Catalog, Secret};

use crate::client::{ApiClient, NewWebhook, WebhookChanges, pretty_json};

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
    /// Manage an organization's webhooks through the admin API.
    Webhooks {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// List the event types webhooks can subscribe to (from the admin API).
    EventTypes {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a webhook's delivery attempts through the admin API.
    Attempts {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: operations::AttemptsAction,
    },
    /// List, replay and purge dead letters through the admin API.
    DeadLetters {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: operations::DeadLettersAction,
    },
}

/// Where the admin API is and how to talk to it. Global, so they go anywhere after
/// `webhooks` (or `attempts`, `dead-letters`): `hookwire webhooks list --org acme --json`.
#[derive(clap::Args, Debug)]
struct ApiArgs {
    // Not named `url`: a global arg shares its id with the subcommands' args, and
    // `create --url` must not replace it.
    /// The admin API's base URL.
    #[arg(
        long = "api",
        value_name = "URL",
        env = "HOOKWIRE_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    api_url: String,
    /// A bearer token from the daemon's `api.tokens`.
    #[arg(
        long,
        env = "HOOKWIRE_API_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Print the API's JSON answer, indented, instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum WebhookAction {
    /// Create a webhook. The API first sends it a signed test event, and saves it only
    /// if the receiver answers 2xx. Prints the signing secret, shown only this once.
    Create {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The receiver's http(s) URL.
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (see `hookwire event-types`).
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// What the webhook is for.
        #[arg(long)]
        description: Option<String>,
        /// Save without sending the test event (the URL is still checked).
        #[arg(long)]
        no_verify: bool,
    },
    /// List an organization's webhooks, oldest first.
    List {
        /// The organization.
        #[arg(long)]
        org: String,
    },
    /// Show one webhook.
    Get {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long)]
        id: String,
    },
    /// Change a webhook; what is not given stays. A new URL gets the test event first.
    Update {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long)]
        id: String,
        /// A new receiver URL.
        #[arg(long)]
        url: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// New event types, comma-separated; they replace the current ones.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// Enable it (clears the reason hookwire disabled it for).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable it: it receives nothing until enabled again.
        #[arg(long)]
        disable: bool,
        /// Save a new URL without sending it the test event.
        #[arg(long)]
        no_verify: bool,
    },
    /// Delete a webhook.
    Delete {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long)]
        id: String,
    },
    /// Send a signed test event now and show the receiver's answer; exits non-zero
    /// when it was not accepted.
    Test {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long)]
        id: String,
    },
    /// Issue a new signing secret, shown only this once. The previous one keeps signing
    /// through the daemon's `secrets.rotation_grace_secs`.
    RotateSecret {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long)]
        id: String,
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
    allocator::tune();
    let cli = Cli::parse();
    let runtime = match runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
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
            let connection = hookwire_amqp::connect(&amqp.url, "hookwire-topology")
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
        Command::Webhooks { api, action } => webhooks(&api, action).await,
        Command::Attempts { api, action } => operations::attempts(&api, action).await,
        Command::DeadLetters { api, action } => operations::dead_letters(&api, action).await,
        Command::EventTypes { api } => {
            let reply = api_client(&api)?.event_types().await?;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
                return Ok(());
            }
            let empty = Vec::new();
            let types = reply.value["event_types"].as_array().unwrap_or(&empty);
            let rows = types
                .iter()
                .map(|t| {
                    let fields: Vec<&str> = t["fields"]
                        .as_array()
                        .map(|f| f.iter().filter_map(serde_json::Value::as_str).collect())
                        .unwrap_or_default();
                    vec![
                        t["name"].as_str().unwrap_or_default().to_owned(),
                        fields.join(","),
                        t["description"].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            print_table(&["NAME", "FIELDS", "DESCRIPTION"], rows);
            Ok(())
        }
    }
}

fn api_client(api: &ApiArgs) -> Result<ApiClient> {
    let Some(token) = api.token.as_deref().filter(|t| !t.is_empty()) else {
        bail!(
            "no API token: pass --token or set HOOKWIRE_API_TOKEN (one of the daemon's `api.tokens`)"
        );
    };
    ApiClient::new(&api.api_url, token)
}

/// Runs one `webhooks` subcommand and prints its answer.
async fn webhooks(api: &ApiArgs, action: WebhookAction) -> Result<()> {
    let client = api_client(api)?;
    match action {
        WebhookAction::Create {
            org,
            url,
            events,
            description,
            no_verify,
        } => {
            let new = NewWebhook {
                url,
                description,
                events: clean_events(events)?,
            };
            let reply = client.create(&org, &new, !no_verify).await?;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
                return Ok(());
            }
            let created = reply.value;
            println!(
                "Created webhook {} for {}.",
                created.webhook.id, created.webhook.org
            );
            print_webhook(&created.webhook);
            print_secret(&created.secret);
        }
        WebhookAction::List { org } => {
            let reply = client.list(&org).await?;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
                return Ok(());
            }
            if reply.value.webhooks.is_empty() {
                println!("Organization {org} has no webhooks.");
                return Ok(());
            }
            let rows = reply
                .value
                .webhooks
                .iter()
                .map(|w| {
                    vec![
                        w.id.to_string(),
                        enabled_cell(w),
                        w.events.join(","),
                        w.url.clone(),
                        w.description.clone(),
                    ]
                })
                .collect();
            print_table(&["ID", "ENABLED", "EVENTS", "URL", "DESCRIPTION"], rows);
        }
        WebhookAction::Get { org, id } => {
            let reply = client.get(&org, &id).await?;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
                return Ok(());
            }
            print_webhook(&reply.value);
        }
        WebhookAction::Update {
            org,
            id,
            url,
            description,
            events,
            enable,
            disable,
            no_verify,
        } => {
            let changes = WebhookChanges {
                url,
                description,
                events: events.map(clean_events).transpose()?,
                enabled: (enable || disable).then_some(enable),
            };
            if changes.is_empty() {
                bail!(
                    "nothing to change: pass --url, --description, --events, --enable or --disable"
                );
            }
            let reply = client.update(&org, &id, &changes, !no_verify).await?;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
                return Ok(());
            }
            println!("Updated webhook {}.", reply.value.id);
            print_webhook(&reply.value);
        }
        WebhookAction::Delete { org, id } => {
            client.delete(&org, &id).await?;
            if api.json {
                // 204 has no body; say so in JSON for scripts that parse every answer.
                println!("{}", serde_json::json!({ "deleted": id }));
            } else {
                println!("Deleted webhook {id}.");
            }
        }
        WebhookAction::Test { org, id } => {
            let reply = client.test(&org, &id).await?;
            let result = reply.value;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
            } else if result.delivered {
                println!(
                    "Delivered: the receiver answered HTTP {} in {} ms.",
                    result.status.unwrap_or_default(),
                    result.latency_ms
                );
            } else {
                println!(
                    "Not delivered after {} ms: {}{}",
                    result.latency_ms,
                    result.error.as_deref().unwrap_or("no answer"),
                    result
                        .status
                        .map(|s| format!(" (HTTP {s})"))
                        .unwrap_or_default()
                );
            }
            if !result.delivered {
                bail!("the receiver did not accept the test event");
            }
        }
        WebhookAction::RotateSecret { org, id } => {
            let reply = client.rotate_secret(&org, &id).await?;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
                return Ok(());
            }
            println!("Rotated the secret of webhook {id}.");
            print_secret(&reply.value.secret);
            println!(
                "The previous secret also signs deliveries until {}.",
                reply.value.previous_valid_until
            );
        }
    }
    Ok(())
}

/// `--events a, b` as the API wants it: trimmed, none empty.
fn clean_events(events: Vec<String>) -> Result<Vec<String>> {
    let events: Vec<String> = events
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if events.is_empty() {
        bail!("--events needs at least one event type (see `hookwire event-types`)");
    }
    Ok(events)
}

fn enabled_cell(w: &hookwire_api::webhooks::Webhook) -> String {
    match (&w.enabled, &w.disabled_reason) {
        (true, _) => "yes".into(),
        (false, Some(reason)) => format!("no ({reason})"),
        (false, None) => "no".into(),
    }
}

fn print_webhook(w: &hookwire_api::webhooks::Webhook) {
    let rows = [
        ("id", w.id.to_string()),
        ("org", w.org.clone()),
        ("url", w.url.clone()),
        ("description", w.description.clone()),
        ("events", w.events.join(",")),
        ("enabled", w.enabled.to_string()),
        (
            "disabled reason",
            w.disabled_reason.clone().unwrap_or_else(|| "-".into()),
        ),
        ("created at", w.created_at.clone()),
        ("updated at", w.updated_at.clone()),
    ];
    for (name, value) in rows {
        let value = if value.is_empty() {
            "-".into()
        } else {
            one_line(&value)
        };
        println!("{:<18}{value}", format!("{name}:"));
    }
}

fn print_secret(secret: &str) {
    println!();
    println!("Signing secret: {secret}");
    println!("It is shown only once: store it now. The API cannot show it again.");
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(|c| one_line(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// A value on one line: a description may hold newlines or tabs.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn api_flags_go_anywhere_and_do_not_clash_with_subcommand_args() {
        let args = [
            "hookwire",
            "webhooks",
            "--api",
            "http://api.test",
            "create",
            "--org",
            "acme",
            "--url",
            "http://receiver.test/hook",
            "--events",
            "a,b",
            "--token",
            "t0ken-123",
            "--json",
        ];
        let cli = Cli::try_parse_from(args).expect("parses");
        let Command::Webhooks { api, action } = cli.command else {
            panic!("not webhooks: {cli:?}");
        };
        assert_eq!(api.api_url, "http://api.test");
        assert_eq!(api.token.as_deref(), Some("t0ken-123"));
        assert!(api.json);
        let WebhookAction::Create { url, events, .. } = action else {
            panic!("not create: {action:?}");
        };
        assert_eq!(url, "http://receiver.test/hook");
        assert_eq!(events, ["a", "b"]);
    }

    #[test]
    fn enable_and_disable_conflict() {
        let args = [
            "hookwire",
            "webhooks",
            "update",
            "--org",
            "o",
            "--id",
            "i",
            "--enable",
            "--disable",
        ];
        assert!(Cli::try_parse_from(args).is_err());
    }
}
