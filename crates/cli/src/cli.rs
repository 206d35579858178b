//! The command line: the commands (the flags several of them share are in `api_flags`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::api_flags::ApiArgs;
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
        /// Boxed: its create and update flags make it several times larger than any other
        /// command.
        #[command(subcommand)]
        action: Box<WebhookAction>,
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
        let WebhookAction::Create { url, events, .. } = *action else {
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

    #[test]
    fn attempts_take_only_the_outcomes_the_log_records() {
        let list = [
            "hookwire",
            "attempts",
            "list",
            "--org",
            "acme",
            "--webhook",
            "w",
        ];
        let all_gone = [&list[..], &["--outcome", "gone", "--all"]].concat();
        assert!(Cli::try_parse_from(all_gone).is_ok());
        let lost = [&list[..], &["--outcome", "lost"]].concat();
        assert!(Cli::try_parse_from(lost).is_err());
    }

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hookwire").chain(args.iter().copied()))
    }

    #[test]
    fn dead_letters_need_one_owner_and_one_selection() {
        let id = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b";
        let cli = parse(&["dead-letters", "purge", "--admin", "--ids", id])
            .expect("--admin --ids parses");
        let Command::DeadLetters {
            action: DeadLettersAction::Purge { owner, ids, before },
            ..
        } = cli.command
        else {
            panic!("not purge: {cli:?}");
        };
        assert_eq!(owner.org(), None);
        assert_eq!(ids.map(|i| i.len()), Some(1));
        assert_eq!(before, None);

        let refused: [&[&str]; 7] = [
            &["dead-letters", "list"],
            &["dead-letters", "list", "--org", "acme", "--admin"],
            &["dead-letters", "purge", "--org", "acme"],
            &[
                "dead-letters",
                "purge",
                "--org",
                "acme",
                "--ids",
                id,
                "--before",
                "2030-01-01T00:00:00Z",
            ],
            &["dead-letters", "replay", "--org", "acme"],
            &[
                "dead-letters",
                "replay",
                "--org",
                "acme",
                "--ids",
                id,
                "--webhook",
                id,
            ],
            &[
                "dead-letters",
                "replay",
                "--org",
                "acme",
                "--ids",
                "not-an-id",
            ],
        ];
        for args in refused {
            assert!(parse(args).is_err(), "{args:?} parsed");
        }
        let accepted: [&[&str]; 3] = [
            &[
                "dead-letters",
                "replay",
                "--org",
                "acme",
                "--webhook",
                id,
                "--since",
                "2024-01-01T00:00:00Z",
            ],
            &[
                "dead-letters",
                "replay",
                "--org",
                "acme",
                "--until",
                "2024-01-01T00:00:00Z",
            ],
            &["dead-letters", "list", "--admin", "--json"],
        ];
        for args in accepted {
            assert!(parse(args).is_ok(), "{args:?} refused");
        }
    }
}
