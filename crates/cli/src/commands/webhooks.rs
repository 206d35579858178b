//! `hookwire webhooks`: create, list, show, change, delete and test an organization's
//! webhooks, rotate their secrets and resend kept events to them, through the admin API.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::Subcommand;
use hookwire_api::webhooks::{Webhook, WebhookList};
use hookwire_core::client_tls::ClientKey;

use crate::api_flags::ApiArgs;
use crate::client::{NewWebhook, WebhookChanges, follow_pages};
use crate::output::{one_line, print_json, print_json_value, print_table};

mod options;
mod transform;

pub use options::{HeaderArgs, RetryArgs, RetryRemovalArgs, TlsArgs};
pub use transform::{PreviewArgs, TransformArgs, TransformChangeArgs};

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
        #[command(flatten)]
        headers: HeaderArgs,
        /// Also sign with an Ed25519 key (`v1a`); receivers verify with the public key shown.
        #[arg(long)]
        ed25519: bool,
        /// A CEL expression over `body` and `event_type`: only events for which it is
        /// true are delivered, e.g. 'body.report_run_url.startsWith("https://…/spaces/s1/")'.
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        transform: TransformArgs,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        retry: RetryArgs,
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
        #[command(flatten)]
        headers: HeaderArgs,
        /// Remove a custom header (plain or secret); repeatable.
        #[arg(long = "remove-header", value_name = "NAME")]
        remove_headers: Vec<String>,
        /// Turn Ed25519 `v1a` signatures on (a new key).
        #[arg(long, conflicts_with = "no_ed25519")]
        ed25519: bool,
        /// Turn Ed25519 signatures off (its keys are dropped).
        #[arg(long)]
        no_ed25519: bool,
        /// A new CEL filter over `body` and `event_type`.
        #[arg(long, conflicts_with = "no_filter")]
        filter: Option<String>,
        /// Remove the filter: every event of its types is delivered.
        #[arg(long)]
        no_filter: bool,
        #[command(flatten)]
        transform: TransformChangeArgs,
        #[command(flatten)]
        tls: TlsArgs,
        /// Remove the client certificate and its key.
        #[arg(long, conflicts_with = "client_cert")]
        no_client_cert: bool,
        /// Remove the webhook's CA certificates.
        #[arg(long, conflicts_with = "ca_file")]
        no_ca_file: bool,
        #[command(flatten)]
        retry: RetryArgs,
        #[command(flatten)]
        retry_removal: RetryRemovalArgs,
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
    /// Show the body and headers a transform would send for a sample event; sends nothing.
    PreviewTransform(PreviewArgs),
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
    /// Resend kept events to this webhook through the deliveries queue, with a fresh
    /// attempt budget and their original `webhook-id`: one event (--event) or every
    /// event received from --from to --to (all pages). Events older than the daemon's
    /// `store.payload_retention` are gone.
    Resend {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long)]
        id: String,
        /// The event's id.
        #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
        event: Option<String>,
        /// Events received at or after this time (RFC 3339, e.g. 2026-12-01T09:00:00Z)…
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// …and before this one (RFC 3339).
        #[arg(long, requires = "from")]
        to: Option<String>,
    },
    /// Issue a new Ed25519 key and show its public key. The previous one keeps signing
    /// through the daemon's `secrets.rotation_grace`.
    RotateEd25519Key {
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
            headers,
            ed25519,
            filter,
            transform,
            tls,
            retry,
        } => {
            let (headers, secret_headers) = headers.parse()?;
            let [client_certificate, client_key, ca_certificates] = tls.read()?;
            let new = NewWebhook {
                url,
                description,
                events: clean_events(events)?,
                headers,
                secret_headers,
                ed25519,
                filter,
                transform: transform.read()?,
                client_certificate,
                client_key: client_key.map(ClientKey::new),
                ca_certificates,
                retry: retry.to_json(&RetryRemovalArgs::default()),
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
            headers,
            remove_headers,
            ed25519,
            no_ed25519,
            filter,
            no_filter,
            transform,
            tls,
            no_client_cert,
            no_ca_file,
            retry,
            retry_removal,
        } => {
            let (plain, secret) = headers.parse()?;
            let [client_certificate, client_key, ca_certificates] = tls.read()?;
            let mut headers: BTreeMap<String, Option<String>> =
                plain.into_iter().map(|(n, v)| (n, Some(v))).collect();
            for name in remove_headers {
                headers.insert(name, None);
            }
            let changes = WebhookChanges {
                url,
                description,
                events: events.map(clean_events).transpose()?,
                enabled: (enable || disable).then_some(enable),
                headers,
                secret_headers: secret.into_iter().map(|(n, v)| (n, Some(v))).collect(),
                ed25519: (ed25519 || no_ed25519).then_some(ed25519),
                filter: options::replaced(filter, no_filter),
                transform: transform.change()?,
                client_certificate: options::replaced(client_certificate, no_client_cert),
                client_key: client_key.map(ClientKey::new),
                ca_certificates: options::replaced(ca_certificates, no_ca_file),
                retry: retry.to_json(&retry_removal),
            };
            if changes.is_empty() {
                bail!(
                    "nothing to change: pass --url, --description, --events, --enable, --disable, --header, --secret-header, --remove-header, --ed25519, --no-ed25519, --filter, --no-filter, --transform, --transform-file, --no-transform, --client-cert, --no-client-cert, --ca-file, --no-ca-file, --retry-schedule, --no-retry-schedule, --max-age or --no-max-age"
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
        WebhookAction::PreviewTransform(args) => transform::preview(api, &client, args).await?,
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
        WebhookAction::Resend {
            org,
            id,
            event,
            from,
            to,
        } => resend(api, &client, &org, &id, event, from, to).await?,
        WebhookAction::RotateEd25519Key { org, id } => {
            let reply = client.rotate_ed25519_key(&org, &id).await?;
            if api.json {
                print_json(&reply.raw);
                return Ok(());
            }
            println!("Rotated the Ed25519 key of webhook {id}.");
            println!("Public key: {}", reply.value.public_key);
            println!(
                "The previous key also signs deliveries until {}.",
                reply.value.previous_valid_until
            );
        }
    }
    Ok(())
}

/// One event, or every page of a range, resent; prints what was queued and skipped.
async fn resend(
    api: &ApiArgs,
    client: &crate::client::ApiClient,
    org: &str,
    id: &str,
    event: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> Result<()> {
    let mut all = hookwire_api::resend::ResendResult {
        queued: Vec::new(),
        skipped: Vec::new(),
        next_cursor: None,
    };
    let mut cursor: Option<String> = None;
    loop {
        let selection = match &event {
            Some(event) => serde_json::json!({ "event_id": event }),
            None => serde_json::json!({ "from": from, "to": to, "cursor": cursor }),
        };
        let page = match client.resend(org, id, selection).await {
            Ok(reply) => reply.value,
            // A range outruns the resend budget: wait as the API says, then carry on.
            Err(e) if event.is_none() => match e.downcast_ref::<crate::client::ApiFailure>() {
                Some(f) if f.status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    tokio::time::sleep(f.retry_after.unwrap_or(std::time::Duration::from_secs(1)))
                        .await;
                    continue;
                }
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        };
        all.queued.extend(page.queued);
        all.skipped.extend(page.skipped);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    if api.json {
        return print_json_value(&all);
    }
    if all.queued.is_empty() && all.skipped.is_empty() {
        println!("No kept event to resend to webhook {id}.");
        return Ok(());
    }
    let rows = all
        .queued
        .iter()
        .map(|e| {
            vec![
                e.event_id.clone(),
                e.event_type.clone(),
                e.received_at.clone(),
                e.message_id.clone(),
                "queued".into(),
            ]
        })
        .chain(all.skipped.iter().map(|s| {
            vec![
                s.event_id.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("skipped ({})", s.reason),
            ]
        }))
        .collect();
    print_table(
        &["EVENT", "TYPE", "RECEIVED AT", "WEBHOOK-ID", "RESULT"],
        rows,
    );
    println!(
        "Resent {} event(s) to webhook {id}; {} skipped.",
        all.queued.len(),
        all.skipped.len()
    );
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
        ("filter", w.filter.clone().unwrap_or_default()),
        (
            "transform",
            one_line(w.transform.as_deref().unwrap_or_default()),
        ),
        ("headers", headers_cell(w)),
        ("public keys", public_keys_cell(w)),
        ("client cert", client_cert_cell(w)),
        (
            "ca certificates",
            w.ca_certificates
                .iter()
                .map(|c| format!("{} (expires {})", c.subject, c.expires_at))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("retry", options::retry_cell(w)),
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

/// Plain headers with their values, secret ones by name only.
fn headers_cell(w: &Webhook) -> String {
    w.headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .chain(
            w.secret_headers
                .iter()
                .map(|name| format!("{name}: <secret>")),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a client certificate is set, and what it says; never its key.
fn client_cert_cell(w: &Webhook) -> String {
    w.client_certificate
        .as_ref()
        .map(|c| {
            format!(
                "set, expires {} ({}, sha256 {})",
                c.expires_at, c.subject, c.fingerprint_sha256
            )
        })
        .unwrap_or_default()
}

/// The Ed25519 public keys, newest first, with the end of a rotated-out key's grace.
fn public_keys_cell(w: &Webhook) -> String {
    w.public_keys
        .iter()
        .map(|k| match &k.valid_until {
            Some(until) => format!("{} (until {until})", k.key),
            None => k.key.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_secret(secret: &str) {
    println!();
    println!("Signing secret: {secret}");
    println!("It is shown only once: store it now. The API cannot show it again.");
}
