//! `hookwire access-tokens`: short-lived tokens limited to one organization, minted by an
//! operator through the admin API (e.g. to open the console for that organization only).

use anyhow::Result;
use clap::Subcommand;

use crate::api_flags::ApiArgs;
use crate::output::print_json;

#[derive(Subcommand, Debug)]
pub enum AccessTokensAction {
    /// Mint a token that reaches one organization's routes only, and prints it with a
    /// console link. Needs an operator's token (`api.tokens`).
    Create {
        /// The organization.
        #[arg(long)]
        org: String,
        /// Its lifetime, e.g. `15m` or `8h`: 1m to the daemon's
        /// `api.access_token_max_ttl` (one hour, or that maximum if shorter, when absent).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// Let it only read.
        #[arg(long)]
        read_only: bool,
    },
}

/// Runs one `access-tokens` subcommand and prints its answer.
pub async fn run(api: &ApiArgs, action: AccessTokensAction) -> Result<()> {
    let AccessTokensAction::Create {
        org,
        ttl,
        read_only,
    } = action;
    let reply = api
        .client()?
        .mint_access_token(&org, ttl.as_deref(), read_only)
        .await?;
    if api.json {
        print_json(&reply.raw);
        return Ok(());
    }
    let t = reply.value;
    let mode = if t.read_only {
        "read-only"
    } else {
        "read-write"
    };
    println!("{}", t.token);
    eprintln!(
        "{mode} token for organization `{}`, valid until {}; console: {}{}",
        t.org,
        t.expires_at,
        api.api_url.trim_end_matches('/'),
        t.console_path
    );
    Ok(())
}
