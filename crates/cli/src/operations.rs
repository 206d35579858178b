//! `hookwire attempts` and `hookwire dead-letters`: the attempt log and the dead-letter
//! archive, through the admin API's operations routes.

use anyhow::{Result, bail};
use clap::Subcommand;
use hookwire_api::operations::{
    Attempt, AttemptPage, DeadLetterList, DeadLetterView, ReplayResult,
};
use uuid::Uuid;

use crate::client::{
    AttemptFilter, DeadLetterFilter, PurgeSelection, ReplaySelection, pretty_json,
};
use crate::{ApiArgs, api_client, print_table};

/// The outcomes the attempt log records.
const OUTCOMES: [&str; 4] = ["delivered", "retry", "permanent", "gone"];

#[derive(Subcommand, Debug)]
pub enum AttemptsAction {
    /// A webhook's delivery attempts, oldest first, one page at a time (or `--all`).
    List {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The webhook's id.
        #[arg(long, value_name = "ID")]
        webhook: String,
        /// Only attempts with this outcome.
        #[arg(long, value_parser = OUTCOMES)]
        outcome: Option<String>,
        /// Only attempts made at or after this time.
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// Only attempts made before this time.
        #[arg(long, value_name = "RFC3339")]
        until: Option<String>,
        #[command(flatten)]
        pages: Pages,
    },
}

/// Which page of a list, or every page.
#[derive(clap::Args, Debug)]
pub struct Pages {
    /// Items per page, 1 to 500 (the API's default is 100).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Start at this page: the cursor a previous `list` printed.
    #[arg(long)]
    cursor: Option<String>,
    /// Follow the pages to the end and print them as one.
    #[arg(long)]
    all: bool,
}

/// `--org ORG` or `--admin`: whose dead letters.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Owner {
    /// The organization.
    #[arg(long)]
    org: Option<String>,
    /// The dead letters that belong to no organization: events whose `org` was missing
    /// or invalid.
    #[arg(long)]
    admin: bool,
}

impl Owner {
    /// The organization, or `None` for `--admin`.
    fn org(&self) -> Option<&str> {
        if self.admin {
            None
        } else {
            self.org.as_deref()
        }
    }

    fn describe(&self) -> String {
        match self.org() {
            Some(org) => format!("of organization {org}"),
            None => "without an organization".into(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum DeadLettersAction {
    /// List dead letters, oldest first, one page at a time (or `--all`).
    List {
        #[command(flatten)]
        owner: Owner,
        /// Only this webhook's.
        #[arg(long, value_name = "ID", value_parser = parse_id)]
        webhook: Option<Uuid>,
        /// Only those dead at or after this time.
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// Only those dead before this time.
        #[arg(long, value_name = "RFC3339")]
        until: Option<String>,
        #[command(flatten)]
        pages: Pages,
    },
    /// Publish dead letters back: failed deliveries get a fresh retry budget. Those
    /// replayed leave the archive; exits non-zero when any could not be replayed.
    #[command(group(
        clap::ArgGroup::new("selection")
            .required(true)
            .multiple(true)
            .args(["ids", "webhook", "since", "until"])
    ))]
    Replay {
        /// The organization.
        #[arg(long)]
        org: String,
        /// These dead letters, comma-separated ids.
        #[arg(
            long,
            value_name = "ID,…",
            value_delimiter = ',',
            value_parser = parse_id,
            conflicts_with_all = ["webhook", "since", "until"]
        )]
        ids: Option<Vec<Uuid>>,
        /// Every dead letter of this webhook (with --since/--until: of that time only).
        #[arg(long, value_name = "ID", value_parser = parse_id)]
        webhook: Option<Uuid>,
        /// Those dead at or after this time.
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// Those dead before this time.
        #[arg(long, value_name = "RFC3339")]
        until: Option<String>,
    },
    /// Delete dead letters for good, by id or by age.
    #[command(group(
        clap::ArgGroup::new("selection")
            .required(true)
            .multiple(false)
            .args(["ids", "before"])
    ))]
    Purge {
        #[command(flatten)]
        owner: Owner,
        /// These dead letters, comma-separated ids.
        #[arg(long, value_name = "ID,…", value_delimiter = ',', value_parser = parse_id)]
        ids: Option<Vec<Uuid>>,
        /// Every dead letter archived before this time.
        #[arg(long, value_name = "RFC3339")]
        before: Option<String>,
    },
}

/// A dead-letter or webhook id as the API takes it in a query or a body.
fn parse_id(text: &str) -> std::result::Result<Uuid, String> {
    Uuid::parse_str(text.trim()).map_err(|_| format!("`{text}` is not an id (a UUID)"))
}

/// Runs one `attempts` subcommand and prints its answer.
pub async fn attempts(api: &ApiArgs, action: AttemptsAction) -> Result<()> {
    let client = api_client(api)?;
    let AttemptsAction::List {
        org,
        webhook,
        outcome,
        since,
        until,
        pages: Pages { limit, cursor, all },
    } = action;
    let filtered = outcome.is_some() || since.is_some() || until.is_some();
    let mut filter = AttemptFilter {
        outcome,
        since,
        until,
        cursor,
        limit,
    };
    if !all {
        let reply = client.attempts(&org, &webhook, &filter).await?;
        if api.json {
            println!("{}", pretty_json(&reply.raw));
            return Ok(());
        }
        print_attempts(&reply.value.attempts, &webhook, filtered);
        if let Some(next) = reply.value.next_cursor {
            // On stderr, so that the table alone goes down a pipe.
            eprintln!("More attempts: add --cursor {next} (or --all for every page).");
        }
        return Ok(());
    }
    let attempts = follow_pages(filter.cursor.clone(), async |cursor| {
        filter.cursor = cursor;
        let page = client.attempts(&org, &webhook, &filter).await?.value;
        Ok((page.attempts, page.next_cursor))
    })
    .await?;
    if api.json {
        let all = AttemptPage {
            attempts,
            next_cursor: None,
        };
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print_attempts(&attempts, &webhook, filtered);
    }
    Ok(())
}

fn print_attempts(attempts: &[Attempt], webhook: &str, filtered: bool) {
    if attempts.is_empty() {
        let matching = if filtered {
            " matching the filters"
        } else {
            ""
        };
        println!("Webhook {webhook} has no attempts{matching}.");
        return;
    }
    let rows = attempts
        .iter()
        .map(|a| {
            vec![
                a.at.clone(),
                a.attempt.to_string(),
                a.outcome.clone(),
                a.status.map_or_else(|| "-".into(), |s| s.to_string()),
                format!("{}ms", a.latency_ms),
                error_cell(a),
            ]
        })
        .collect();
    print_table(
        &["AT", "ATTEMPT", "OUTCOME", "STATUS", "LATENCY", "ERROR"],
        rows,
    );
}

fn error_cell(a: &Attempt) -> String {
    match (&a.error_kind, &a.error) {
        (Some(kind), Some(error)) => format!("{kind}: {error}"),
        (None, Some(error)) => error.clone(),
        (Some(kind), None) => kind.clone(),
        (None, None) => "-".into(),
    }
}

/// Every page from `cursor` on, fetched with `fetch`, as one list.
async fn follow_pages<T>(
    mut cursor: Option<String>,
    mut fetch: impl AsyncFnMut(Option<String>) -> Result<(Vec<T>, Option<String>)>,
) -> Result<Vec<T>> {
    let mut all = Vec::new();
    loop {
        let (items, next) = fetch(cursor.clone()).await?;
        all.extend(items);
        match next {
            None => return Ok(all),
            Some(next) if cursor.as_ref() == Some(&next) => {
                bail!("the API answered the cursor `{next}` with itself; stopping")
            }
            Some(next) => cursor = Some(next),
        }
    }
}

/// Runs one `dead-letters` subcommand and prints its answer.
pub async fn dead_letters(api: &ApiArgs, action: DeadLettersAction) -> Result<()> {
    let client = api_client(api)?;
    match action {
        DeadLettersAction::List {
            owner,
            webhook,
            since,
            until,
            pages: Pages { limit, cursor, all },
        } => {
            let filtered = webhook.is_some() || since.is_some() || until.is_some();
            let mut filter = DeadLetterFilter {
                webhook_id: webhook,
                since,
                until,
                cursor,
                limit,
            };
            let (dead, next_cursor) = if all {
                let dead = follow_pages(filter.cursor.clone(), async |cursor| {
                    filter.cursor = cursor;
                    let page = client.dead_letters(owner.org(), &filter).await?.value;
                    Ok((page.dead_letters, page.next_cursor))
                })
                .await?;
                if api.json {
                    let all = DeadLetterList {
                        dead_letters: dead,
                        next_cursor: None,
                    };
                    println!("{}", serde_json::to_string_pretty(&all)?);
                    return Ok(());
                }
                (dead, None)
            } else {
                let reply = client.dead_letters(owner.org(), &filter).await?;
                if api.json {
                    println!("{}", pretty_json(&reply.raw));
                    return Ok(());
                }
                (reply.value.dead_letters, reply.value.next_cursor)
            };
            if dead.is_empty() {
                let matching = if filtered {
                    " matching the filters"
                } else {
                    ""
                };
                println!("No dead letters {}{matching}.", owner.describe());
            } else {
                print_dead_letters(&dead);
            }
            if let Some(next) = next_cursor {
                // On stderr, so that the table alone goes down a pipe.
                eprintln!("More dead letters: add --cursor {next} (or --all for every page).");
            }
        }
        DeadLettersAction::Replay {
            org,
            ids,
            webhook,
            since,
            until,
        } => {
            let selection = ReplaySelection {
                ids,
                webhook_id: webhook,
                since,
                until,
            };
            let reply = client.replay(&org, &selection).await?;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
            } else {
                print!("{}", replay_summary(&reply.value));
            }
            let failed = reply.value.failed.len();
            if failed > 0 {
                bail!(
                    "{} not replayed; {} in the archive",
                    count(failed, "dead letter was", "dead letters were"),
                    if failed == 1 { "it stays" } else { "they stay" }
                );
            }
        }
        DeadLettersAction::Purge { owner, ids, before } => {
            let selection = PurgeSelection { ids, before };
            let reply = client.purge(owner.org(), &selection).await?;
            if api.json {
                println!("{}", pretty_json(&reply.raw));
            } else {
                println!(
                    "Purged {}.",
                    count(reply.value.purged, "dead letter", "dead letters")
                );
            }
        }
    }
    Ok(())
}

fn print_dead_letters(dead: &[DeadLetterView]) {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows = dead
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.dead_at.clone(),
                d.reason.clone(),
                dash(d.webhook_id.map(|id| id.to_string())),
                dash(d.event_type.clone()),
                if d.detail.is_empty() {
                    "-".into()
                } else {
                    d.detail.clone()
                },
            ]
        })
        .collect();
    print_table(
        &["ID", "DEAD AT", "REASON", "WEBHOOK", "EVENT TYPE", "DETAIL"],
        rows,
    );
}

/// `Replayed N dead letters.`, then one line per failure.
fn replay_summary(result: &ReplayResult) -> String {
    let mut out = format!(
        "Replayed {}.\n",
        count(result.replayed.len(), "dead letter", "dead letters")
    );
    for failure in &result.failed {
        out.push_str(&format!(
            "Not replayed: {}: {}\n",
            failure.id,
            crate::one_line(&failure.error)
        ));
    }
    out
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use hookwire_api::operations::ReplayFailure;

    use super::*;
    use crate::{Cli, Command};

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
        let accepted: [&[&str]; 4] = [
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
            &[
                "attempts",
                "list",
                "--org",
                "acme",
                "--webhook",
                "w",
                "--outcome",
                "gone",
                "--all",
            ],
        ];
        for args in accepted {
            assert!(parse(args).is_ok(), "{args:?} refused");
        }
        assert!(
            parse(&[
                "attempts",
                "list",
                "--org",
                "acme",
                "--webhook",
                "w",
                "--outcome",
                "lost"
            ])
            .is_err()
        );
    }

    #[test]
    fn replay_summary_counts_and_lists_failures() {
        let ok = ReplayResult {
            replayed: vec![Uuid::nil()],
            failed: Vec::new(),
        };
        assert_eq!(replay_summary(&ok), "Replayed 1 dead letter.\n");
        let failed = ReplayResult {
            replayed: Vec::new(),
            failed: vec![ReplayFailure {
                id: Uuid::nil(),
                error: "broker\ndown".into(),
            }],
        };
        assert_eq!(
            replay_summary(&failed),
            "Replayed 0 dead letters.\n\
             Not replayed: 00000000-0000-0000-0000-000000000000: broker down\n"
        );
    }
}
