//! The flags of a webhook's delivery options that `create` and `update` share: custom
//! headers, the TLS settings read from PEM files, its own retry policy, and its limits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use hookwire_api::webhooks::Webhook;
use serde_json::{Value, json};

/// Custom headers to set.
#[derive(Args, Debug, Default)]
pub struct HeaderArgs {
    /// A static header for every request, as NAME=VALUE; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// A header whose value is a secret (sealed at rest, never shown again), as
    /// NAME=VALUE; repeatable. The value shows in the process list: prefer
    /// --secret-header-file.
    #[arg(long = "secret-header", value_name = "NAME=VALUE")]
    secret_headers: Vec<String>,
    /// A secret header whose value is the first line of a file, as NAME=PATH; repeatable.
    #[arg(long = "secret-header-file", value_name = "NAME=PATH")]
    secret_header_files: Vec<String>,
}

impl HeaderArgs {
    /// The plain and the secret headers, by name.
    pub(super) fn parse(&self) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
        let plain = self
            .headers
            .iter()
            .map(|h| split_header(h, "--header"))
            .collect::<Result<_>>()?;
        let mut secret: BTreeMap<String, String> = self
            .secret_headers
            .iter()
            .map(|h| split_header(h, "--secret-header"))
            .collect::<Result<_>>()?;
        for spec in &self.secret_header_files {
            let (name, path) = split_header(spec, "--secret-header-file")?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the value of header {name} from {path}"))?;
            secret.insert(name, text.lines().next().unwrap_or_default().to_owned());
        }
        Ok((plain, secret))
    }
}

/// A webhook's TLS settings toward its receiver, read from PEM files.
#[derive(Args, Debug, Default)]
pub struct TlsArgs {
    /// A PEM file with the client certificate (its own first, then intermediates),
    /// presented when the receiver asks for one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The PEM file of the client certificate's private key: sealed at rest, never shown
    /// again.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A PEM file of CA certificates that may sign the receiver's certificate (a
    /// receiver with a private CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The client certificate, its key and the CA certificates, as PEM text.
    pub(super) fn read(&self) -> Result<[Option<String>; 3]> {
        let read = |path: &Option<PathBuf>, what: &str| {
            path.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read the {what} from {}", p.display()))
                })
                .transpose()
        };
        Ok([
            read(&self.client_cert, "client certificate")?,
            read(&self.client_key, "client key")?,
            read(&self.ca_file, "CA certificates")?,
        ])
    }
}

/// A change made only over the version the caller read (`If-Match`).
#[derive(Args, Debug, Default)]
pub struct IfVersion {
    /// Refuse the change (409 `conflict`) unless the webhook is still at this `version`
    /// (shown by `get`): someone else's change since is not overwritten.
    #[arg(long = "if-version", value_name = "VERSION")]
    pub expected: Option<u64>,
}

/// How hard hookwire may press the receiver; the API checks the ranges.
#[derive(Args, Debug, Default)]
pub struct LimitArgs {
    /// Attempts in flight to it at once, 1 to 1000: the ceiling of its adaptive limit
    /// (the daemon's `delivery.per_endpoint_concurrency` when not set).
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<u32>,
    /// Deliveries per second, 1 to 100000 (unlimited when not set).
    #[arg(long, value_name = "N")]
    pub rate_limit_per_sec: Option<u32>,
}

/// The webhook's own retry policy; the API checks it against the daemon's tiers.
#[derive(Args, Debug, Default)]
pub struct RetryArgs {
    /// Its own retry schedule: the delays between attempts, comma-separated, each one of
    /// the tiers of the daemon's `delivery.retry_schedule` (e.g. `5s,2m`); `""` makes one
    /// attempt only.
    #[arg(long, value_name = "DELAYS")]
    retry_schedule: Option<String>,
    /// Its deliveries older than this (e.g. `1h`) are dead-lettered as `expired`; at most
    /// the daemon's `delivery.max_age`.
    #[arg(long, value_name = "DURATION")]
    max_age: Option<String>,
}

/// Flags that give a webhook the daemon's retry policy back.
#[derive(Args, Debug, Default)]
pub struct RetryRemovalArgs {
    /// Use the daemon's `delivery.retry_schedule` again.
    #[arg(long, conflicts_with = "retry_schedule")]
    no_retry_schedule: bool,
    /// Use the daemon's `delivery.max_age` again.
    #[arg(long, conflicts_with = "max_age")]
    no_max_age: bool,
}

impl RetryArgs {
    /// The request's `retry` object: what these flags set, and what `removal` removes
    /// (null); `None` when they change nothing.
    pub(super) fn to_json(&self, removal: &RetryRemovalArgs) -> Option<Value> {
        let mut retry = serde_json::Map::new();
        if let Some(delays) = &self.retry_schedule {
            let delays: Vec<&str> = delays
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .collect();
            retry.insert("schedule".into(), json!(delays));
        } else if removal.no_retry_schedule {
            retry.insert("schedule".into(), Value::Null);
        }
        if let Some(age) = &self.max_age {
            retry.insert("max_age".into(), json!(age));
        } else if removal.no_max_age {
            retry.insert("max_age".into(), Value::Null);
        }
        (!retry.is_empty()).then_some(Value::Object(retry))
    }
}

/// A webhook's retry policy in one line: `-` when it follows the daemon's.
pub(super) fn retry_cell(w: &Webhook) -> String {
    let Some(retry) = &w.retry else {
        return "-".into();
    };
    let schedule = match &retry.schedule {
        Some(delays) if delays.is_empty() => "one attempt".to_owned(),
        Some(delays) => delays.join(","),
        None => "daemon's".to_owned(),
    };
    let max_age = retry.max_age.as_deref().unwrap_or("daemon's");
    format!("schedule {schedule}; max age {max_age}")
}

/// An update's field: `Some(None)` removes it, `Some(Some(_))` sets it, `None` leaves it.
pub(super) fn replaced<T>(value: Option<T>, remove: bool) -> Option<Option<T>> {
    if remove { Some(None) } else { value.map(Some) }
}

/// `NAME=VALUE` as a pair; the API checks the name and the value.
fn split_header(spec: &str, flag: &str) -> Result<(String, String)> {
    match spec.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => bail!("{flag} takes NAME=VALUE, not `{spec}`"),
    }
}
