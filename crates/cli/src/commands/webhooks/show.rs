//! How `webhooks` commands print a webhook for people.

use hookwire_api::webhooks::Webhook;

use crate::output::one_line;

pub(super) fn enabled_cell(w: &Webhook) -> String {
    match (&w.enabled, &w.disabled_reason) {
        (true, _) => "yes".into(),
        (false, Some(reason)) => format!("no ({reason})"),
        (false, None) => "no".into(),
    }
}

pub(super) fn print_webhook(w: &Webhook) {
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
        ("transform", w.transform.clone().unwrap_or_default()),
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
        ("retry", super::options::retry_cell(w)),
        (
            "max concurrency",
            w.max_concurrency
                .map_or_else(|| "daemon's".into(), |n| n.to_string()),
        ),
        (
            "rate limit",
            w.rate_limit_per_sec
                .map_or_else(|| "none".into(), |n| format!("{n}/s")),
        ),
        ("version", w.version.to_string()),
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

pub(super) fn print_secret(secret: &str) {
    println!();
    println!("Signing secret: {secret}");
    println!("It is shown only once: store it now. The API cannot show it again.");
}
