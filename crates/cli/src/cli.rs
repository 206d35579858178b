//! The command line: the commands (the flags several of them share are in `api_flags`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::api_flags::ApiArgs;
use crate::commands::access_tokens::AccessTokensAction;
use crate::commands::admin::AdminAction;
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
    version = hookwire_app::VERSION,
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
    /// Show what the API token given may do: operator, or which organizations, and
    /// until when.
    Whoami {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Operators' views across organizations, through the admin API.
    Admin {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: AdminAction,
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

        let refused: [&[&str]; 8] = [
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
                "--admin",
                "--ids",
                id,
            ],
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
        let accepted: [&[&str]; 4] = [
            &["dead-letters", "replay", "--admin", "--ids", id],
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

    /// Every older spelling parses to what its current name gives.
    #[test]
    fn older_flag_spellings_are_hidden_aliases() {
        let pairs: [(&[&str], &[&str]); 5] = [
            (
                &["webhooks", "get", "--org", "o", "--id", "w"],
                &["webhooks", "get", "--org", "o", "--webhook", "w"],
            ),
            (
                &[
                    "webhooks", "resend", "--org", "o", "--id", "w", "--event", "e",
                ],
                &[
                    "webhooks",
                    "resend",
                    "--org",
                    "o",
                    "--webhook",
                    "w",
                    "--event-id",
                    "e",
                ],
            ),
            (
                &[
                    "publish", "--org", "o", "--event", "t", "--data", "{}", "--id", "e",
                ],
                &[
                    "publish",
                    "--org",
                    "o",
                    "--event-type",
                    "t",
                    "--data",
                    "{}",
                    "--event-id",
                    "e",
                ],
            ),
            (
                &[
                    "verify",
                    "--secret",
                    "s",
                    "--id",
                    "m",
                    "--timestamp",
                    "1",
                    "--signature",
                    "v",
                ],
                &[
                    "verify",
                    "--secret",
                    "s",
                    "--webhook-id",
                    "m",
                    "--timestamp",
                    "1",
                    "--signature",
                    "v",
                ],
            ),
            (
                &["webhooks", "rotate-secret", "--org", "o", "--id", "w"],
                &["webhooks", "rotate-secret", "--org", "o", "--webhook", "w"],
            ),
        ];
        for (old, new) in pairs {
            let old = parse(old).unwrap_or_else(|e| panic!("{old:?}: {e}"));
            let new = parse(new).unwrap_or_else(|e| panic!("{new:?}: {e}"));
            assert_eq!(format!("{old:?}"), format!("{new:?}"));
        }
        let help = Cli::command()
            .find_subcommand_mut("webhooks")
            .and_then(|w| w.find_subcommand_mut("get"))
            .expect("webhooks get")
            .render_long_help()
            .to_string();
        assert!(
            help.contains("--webhook <ID>") && !help.contains("--id"),
            "{help}"
        );
    }

    #[test]
    fn verify_takes_a_tolerance_as_a_duration() {
        let base = [
            "verify",
            "--secret",
            "s",
            "--webhook-id",
            "m",
            "--timestamp",
            "1",
        ];
        let with =
            |extra: &[&'static str]| parse(&[&base[..], &["--signature", "v"], extra].concat());
        assert!(with(&["--tolerance", "90s"]).is_ok());
        assert!(with(&["--tolerance-secs", "90"]).is_ok());
        let bad = with(&["--tolerance", "300"]).expect_err("a bare number");
        assert!(bad.to_string().contains("not a duration"), "{bad}");
        assert!(with(&["--tolerance", "1m", "--tolerance-secs", "60"]).is_err());
    }
}
