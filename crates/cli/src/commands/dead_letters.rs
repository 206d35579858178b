//! `hookwire dead-letters`: the dead-letter archive, through the admin API: list, replay,
//! purge.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use hookwire_api::operations::{DeadLetterList, DeadLetterView, ReplayResult};
use uuid::Uuid;

use crate::api_flags::{ApiArgs, Pages};
use crate::client::{ApiClient, DeadLetterFilter, PurgeSelection, ReplaySelection, follow_pages};
use crate::output::{one_line, print_json, print_json_value, print_table};

/// The API's largest page: listing what to replay takes as few requests as it can.
const MAX_PAGE: usize = 500;

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
    pub fn org(&self) -> Option<&str> {
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
        /// Show each letter's body too (the archive keeps at most
        /// `store.dead_letter_body_max_bytes` of it).
        #[arg(long)]
        bodies: bool,
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
        #[command(flatten)]
        owner: Owner,
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

/// Runs one `dead-letters` subcommand and prints its answer.
pub async fn run(api: &ApiArgs, action: DeadLettersAction) -> Result<()> {
    let client = api.client()?;
    match action {
        DeadLettersAction::List {
            owner,
            webhook,
            since,
            until,
            bodies,
            pages: Pages { limit, cursor, all },
        } => {
            let filtered = webhook.is_some() || since.is_some() || until.is_some();
            let mut filter = DeadLetterFilter {
                webhook_id: webhook,
                since,
                until,
                cursor,
                limit,
                bodies,
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
                    print_json_value(&all)?;
                    return Ok(());
                }
                (dead, None)
            } else {
                let reply = client.dead_letters(owner.org(), &filter).await?;
                if api.json {
                    print_json(&reply.raw);
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
            owner,
            ids,
            webhook,
            since,
            until,
        } => {
            let filter = DeadLetterFilter {
                webhook_id: webhook,
                since,
                until,
                ..DeadLetterFilter::default()
            };
            let result = replay(api, &client, owner.org(), ids, filter).await?;
            if api.json {
                print_json_value(&result)?;
            } else {
                print!("{}", replay_summary(&result));
            }
            let failed = result.failed.len();
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
                print_json(&reply.raw);
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

/// Dead letters go back this many ids to a request, so that progress shows in between.
const REPLAY_BATCH: usize = 100;

/// Replays `ids`, or the letters `filter` matches when it is asked (those that die again
/// meanwhile are not chased), a batch at a time.
async fn replay(
    api: &ApiArgs,
    client: &ApiClient,
    org: Option<&str>,
    ids: Option<Vec<Uuid>>,
    mut filter: DeadLetterFilter,
) -> Result<ReplayResult> {
    let ids = match ids {
        Some(ids) => ids,
        None => {
            filter.limit = Some(MAX_PAGE);
            follow_pages(None, async |cursor| {
                filter.cursor = cursor;
                let page = client.dead_letters(org, &filter).await?.value;
                let ids = page.dead_letters.into_iter().map(|d| d.id).collect();
                Ok((ids, page.next_cursor))
            })
            .await?
        }
    };
    let progress = crate::progress::bar(Some(ids.len() as u64), "dead letters replayed", api.json);
    let mut result = ReplayResult {
        replayed: Vec::new(),
        failed: Vec::new(),
    };
    for batch in ids.chunks(REPLAY_BATCH) {
        let selection = ReplaySelection {
            ids: Some(batch.to_vec()),
            ..ReplaySelection::default()
        };
        let reply = client.replay(org, &selection).await.with_context(|| {
            format!(
                "the replay stopped after {} replayed",
                result.replayed.len()
            )
        })?;
        result.replayed.extend(reply.value.replayed);
        result.failed.extend(reply.value.failed);
        progress.inc(batch.len() as u64);
    }
    progress.finish_and_clear();
    Ok(result)
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
    for d in dead {
        if let Some(body) = &d.body {
            let kept = if d.truncated {
                format!(" (first bytes of {})", d.body_bytes)
            } else {
                String::new()
            };
            println!("\n{} body{kept}:\n{body}", d.id);
        }
    }
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
            one_line(&failure.error)
        ));
    }
    out
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use hookwire_api::operations::ReplayFailure;

    use super::*;

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
