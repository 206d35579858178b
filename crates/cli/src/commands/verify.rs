//! `hookwire verify`: checks a delivery's signature the way a receiver does.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hookwire_core::{PublicKey, Secret};

/// The delivery's headers and the receiver's secret; the body comes on stdin.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The webhook's `whsec_…` secret. Other users can read it in the process list:
    /// prefer --secret-file.
    #[arg(
        long,
        required_unless_present_any = ["secret_file", "public_key"],
        conflicts_with_all = ["secret_file", "public_key"]
    )]
    secret: Option<String>,
    /// A file holding the `whsec_…` secret (surrounding whitespace ignored). `-` reads it
    /// from the first line of stdin, and the body from the rest.
    #[arg(long, value_name = "PATH", conflicts_with = "public_key")]
    secret_file: Option<PathBuf>,
    /// The webhook's `whpk_…` Ed25519 public key, instead of a secret: checks the `v1a`
    /// signatures.
    #[arg(long)]
    public_key: Option<String>,
    /// The `webhook-id` header.
    #[arg(long = "webhook-id", alias = "id", value_name = "ID")]
    id: String,
    /// The `webhook-timestamp` header.
    #[arg(long)]
    timestamp: u64,
    /// The `webhook-signature` header.
    #[arg(long)]
    signature: String,
    /// Refuse timestamps further than this from now, e.g. `5m` or `90s` (Standard
    /// Webhooks: 5 minutes).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_tolerance)]
    tolerance: Duration,
    /// The tolerance in seconds: the older spelling of --tolerance, kept for scripts.
    #[arg(long, hide = true, conflicts_with = "tolerance")]
    tolerance_secs: Option<u64>,
    /// Print `{"verified":true,"signature":"v1"}` (or `v1a`) instead of `ok`.
    #[arg(long)]
    json: bool,
}

/// `5m`, `90s`, `1h`: a duration as every other hookwire flag takes it.
fn parse_tolerance(text: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration such as `5m` or `90s`: {e}"))
}

impl std::fmt::Debug for VerifyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyArgs")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("public_key", &self.public_key)
            .field("id", &self.id)
            .field("timestamp", &self.timestamp)
            .field("signature", &self.signature)
            .field("tolerance", &self.tolerance)
            .field("tolerance_secs", &self.tolerance_secs)
            .field("json", &self.json)
            .finish()
    }
}

/// Reads the body from stdin and prints `ok` when the signature and timestamp hold.
pub fn run(args: VerifyArgs) -> Result<()> {
    let VerifyArgs {
        secret,
        secret_file,
        public_key,
        id,
        timestamp,
        signature,
        tolerance,
        tolerance_secs,
        json,
    } = args;
    let tolerance_secs = tolerance_secs.unwrap_or(tolerance.as_secs());
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("cannot read the body from stdin")?;
    if let Some(public_key) = public_key {
        let public_key = PublicKey::parse(&public_key)?;
        check_timestamp(timestamp, tolerance_secs)?;
        public_key.verify(&id, timestamp, &input, &signature)?;
        print_verified(json, "v1a");
        return Ok(());
    }
    let (secret, body) = match (secret, secret_file) {
        (Some(secret), _) => (secret, input),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let Some(newline) = input.iter().position(|b| *b == b'\n') else {
                bail!("--secret-file -: stdin must start with the secret on a line of its own");
            };
            let body = input.split_off(newline + 1);
            let line = String::from_utf8(input)
                .context("--secret-file -: the first line of stdin is not text")?;
            (line, body)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read --secret-file {}", path.display()))?;
            (text, input)
        }
        (None, None) => bail!("pass --secret-file, --secret or --public-key"),
    };
    let secret = Secret::parse(secret.trim())?;
    check_timestamp(timestamp, tolerance_secs)?;
    secret.verify(&id, timestamp, &body, &signature)?;
    print_verified(json, "v1");
    Ok(())
}

/// `ok`, or the same for `--json` with the scheme that verified.
fn print_verified(json: bool, scheme: &str) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "verified": true, "signature": scheme })
        );
    } else {
        println!("ok");
    }
}

fn check_timestamp(timestamp: u64, tolerance_secs: u64) -> Result<()> {
    let now = hookwire_core::now_ms() / 1000;
    if now.abs_diff(timestamp) > tolerance_secs {
        bail!("timestamp {timestamp} is more than {tolerance_secs}s from now ({now})");
    }
    Ok(())
}
