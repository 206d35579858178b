//! The command line: the commands, and the flags several of them share.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::client::ApiClient;
use crate::commands::access_tokens::AccessTokensAction;
use crate::commands::attempts::AttemptsAction;
use crate::commands::dead_letters::DeadLettersAction;
use crate::commands::publish::PublishArgs;
use crate::commands::store::StoreAction;
use crate::commands::topology::TopologyAction;
use crate::commands::verify::VerifyArgs;
use crate::commands::webhooks::WebhookAction;

#[derive(Parser, Debug)]
#[command(
    name = "hookwire",
    version,
    about = "Webhook delivery daemon: RabbitMQ in, signed HTTP out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the delivery daemon.
    Serve {
        /// A TOML file layered over the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Publish one event, checked against the catalog, and wait for the broker's confirm.
    Publish(PublishArgs),
    /// Declare or delete a namespace's exchanges and queues.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Maintain the store with `serve` stopped: `reseal` after a `secrets.key` rotation.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Check a delivery the way a receiver does: the body on stdin, the headers as flags.
    Verify(VerifyArgs),
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
        action: AttemptsAction,
    },
    /// List, replay and purge dead letters through the admin API.
    DeadLetters {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: DeadLettersAction,
    },
    /// Mint short-lived tokens limited to one organization through the admin API.
    AccessTokens {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: AccessTokensAction,
    },
}

/// Where the admin API is and how to talk to it. Global, so they go anywhere after
/// `webhooks` (or `attempts`, `dead-letters`): `hookwire webhooks list --org acme --json`.
#[derive(clap::Args, Debug)]
pub struct ApiArgs {
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
    pub api_url: String,
    /// A bearer token: one of the daemon's `api.tokens` or `api.org_tokens`, or an
    /// access token.
    #[arg(
        long,
        env = "HOOKWIRE_API_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON answer, indented, instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ApiArgs {
    /// A client of the API these flags name; refuses to go on without a token.
    pub fn client(&self) -> Result<ApiClient> {
        let Some(token) = self.token.as_deref().filter(|t| !t.is_empty()) else {
            bail!(
                "no API token: pass --token or set HOOKWIRE_API_TOKEN (one of the daemon's `api.tokens`)"
            );
        };
        ApiClient::new(&self.api_url, token)
    }
}

/// Which page of a list, or every page.
#[derive(clap::Args, Debug)]
pub struct Pages {
    /// Items per page, 1 to 500 (the API's default is 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Start at this page: the cursor a previous `list` printed.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow the pages to the end and print them as one.
    #[arg(long)]
    pub all: bool,
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
