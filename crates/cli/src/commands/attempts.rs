//! `hookwire attempts`: a webhook's attempt log, through the admin API.

use anyhow::Result;
use clap::Subcommand;
use hookwire_api::operations::{Attempt, AttemptPage};

use crate::api_flags::{ApiArgs, Pages};
use crate::client::{AttemptFilter, follow_pages};
use crate::output::{print_json, print_json_value, print_table};

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

/// Runs one `attempts` subcommand and prints its answer.
pub async fn run(api: &ApiArgs, action: AttemptsAction) -> Result<()> {
    let client = api.client()?;
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
            print_json(&reply.raw);
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
        print_json_value(&all)?;
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
