//! `hookwire webhooks`: create, list, show, change, delete and test an organization's
//! webhooks, rotate their secrets and resend kept events to them, through the admin API.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::Subcommand;
use hookwire_api::webhooks::WebhookList;
use hookwire_core::client_tls::ClientKey;

use crate::api_flags::ApiArgs;
use crate::client::{NewWebhook, WebhookChanges, follow_pages};
use crate::output::{print_json, print_json_value, print_table};

mod options;
mod resend;
mod show;
mod transform;

pub use options::{HeaderArgs, IfVersion, LimitArgs, RetryArgs, RetryRemovalArgs, TlsArgs};
use show::{enabled_cell, print_secret, print_webhook};
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
        #[command(flatten)]
        limits: LimitArgs,
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
        #[arg(long = "webhook", alias = "id", value_name = "ID")]
        id: String,
    },
    /// Change a webhook; what is not given stays. A new URL gets the test event first.
    Update {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long = "webhook", alias = "id", value_name = "ID")]
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
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        if_version: IfVersion,
    },
    /// Delete a webhook.
    Delete {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long = "webhook", alias = "id", value_name = "ID")]
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
        #[arg(long = "webhook", alias = "id", value_name = "ID")]
        id: String,
    },
    /// Issue a new signing secret, shown only this once. The previous one keeps signing
    /// through the daemon's `secrets.rotation_grace`.
    RotateSecret {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long = "webhook", alias = "id", value_name = "ID")]
        id: String,
        #[command(flatten)]
        if_version: IfVersion,
    },
    /// Resend kept events to this webhook through the deliveries queue, with a fresh
    /// attempt budget and their original `webhook-id`: one event (--event-id) or every
    /// event received from --from to --to (all pages). Events older than the daemon's
    /// `store.payload_retention` are gone.
    Resend {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long = "webhook", alias = "id", value_name = "ID")]
        id: String,
        /// The event's id.
        #[arg(
            long = "event-id",
            alias = "event",
            value_name = "ID",
            conflicts_with_all = ["from", "to"],
            required_unless_present_all = ["from", "to"]
        )]
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
        #[arg(long = "webhook", alias = "id", value_name = "ID")]
        id: String,
        #[command(flatten)]
        if_version: IfVersion,
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
            limits,
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
                max_concurrency: limits.max_concurrency,
                rate_limit_per_sec: limits.rate_limit_per_sec,
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
            limits,
            if_version,
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
                max_concurrency: limits.max_concurrency,
                rate_limit_per_sec: limits.rate_limit_per_sec,
            };
            if changes.is_empty() {
                bail!(
                    "nothing to change: pass --url, --description, --events, --enable, --disable, --header, --secret-header, --remove-header, --ed25519, --no-ed25519, --filter, --no-filter, --transform, --transform-file, --no-transform, --client-cert, --no-client-cert, --ca-file, --no-ca-file, --retry-schedule, --no-retry-schedule, --max-age, --no-max-age, --max-concurrency or --rate-limit-per-sec"
                );
            }
            let reply = client
                .update(&org, &id, &changes, !no_verify, if_version.expected)
                .await?;
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
        WebhookAction::RotateSecret {
            org,
            id,
            if_version,
        } => {
            let reply = client.rotate_secret(&org, &id, if_version.expected).await?;
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
        } => resend::resend(api, &client, &org, &id, event, from, to).await?,
        WebhookAction::RotateEd25519Key {
            org,
            id,
            if_version,
        } => {
            let reply = client
                .rotate_ed25519_key(&org, &id, if_version.expected)
                .await?;
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
