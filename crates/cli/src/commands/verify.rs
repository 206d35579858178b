//! `hookwire verify`: checks a delivery's signature the way a receiver does.

use std::io::Read;

use anyhow::{Context, Result, bail};
use hookwire_core::Secret;

/// The delivery's headers and the receiver's secret; the body comes on stdin.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
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
}

/// Reads the body from stdin and prints `ok` when the signature and timestamp hold.
pub fn run(args: VerifyArgs) -> Result<()> {
    let VerifyArgs {
        secret,
        id,
        timestamp,
        signature,
        tolerance_secs,
    } = args;
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
