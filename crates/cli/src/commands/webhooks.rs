//! `hookwire webhooks`: create, list, show, change, delete and test an organization's
//! webhooks, and rotate their secrets, through the admin API.

use anyhow::{Result, bail};
use clap::Subcommand;
use hookwire_api::webhooks::{Webhook, WebhookList};

use crate::cli::ApiArgs;
use crate::client::{NewWebhook, WebhookChanges, follow_pages};
use crate::output::{one_line, print_json, print_json_value, print_table};

#[derive(Subcommand, Debug)]
pub enum WebhookAction {
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
    /// through the daemon's `secrets.rotation_grace`.
    RotateSecret {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long)]
        id: String,
    },
}

/// Runs one `webhooks` subcommand and prints its answer.
pub async fn run(api: &ApiArgs, action: WebhookAction) -> Result<()> {
    let client = api.client()?;
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
                print_json(&reply.raw);
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
            // Every page: an organization's webhooks are bounded by api.max_webhooks_per_org.
            let webhooks = follow_pages(None, async |cursor| {
                let page = client.list(&org, cursor).await?.value;
                Ok((page.webhooks, page.next_cursor))
            })
            .await?;
            if api.json {
                print_json_value(&WebhookList {
                    webhooks,
                    next_cursor: None,
                })?;
                return Ok(());
            }
            if webhooks.is_empty() {
                println!("Organization {org} has no webhooks.");
                return Ok(());
            }
            let rows = webhooks
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
                print_json(&reply.raw);
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
                print_json(&reply.raw);
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
                print_json(&reply.raw);
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
                print_json(&reply.raw);
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

fn enabled_cell(w: &Webhook) -> String {
    match (&w.enabled, &w.disabled_reason) {
        (true, _) => "yes".into(),
        (false, Some(reason)) => format!("no ({reason})"),
        (false, None) => "no".into(),
    }
}

fn print_webhook(w: &Webhook) {
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
