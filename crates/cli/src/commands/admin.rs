//! `hookwire whoami` and `hookwire admin`: what a token reaches, the operators' views
//! across organizations, and a hot backup of the store, through the admin API.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use hookwire_api::auth::WhoAmI;
use hookwire_api::operations::OrgList;
use hookwire_store::Entry;

use crate::api_flags::{ApiArgs, Pages};
use crate::client::{ApiClient, follow_pages};
use crate::output::{print_json, print_json_value};

#[derive(Subcommand, Debug)]
pub enum AdminAction {
    /// List the organizations that have webhooks, in name order. Needs an operator's
    /// token (`api.tokens`).
    Orgs {
        #[command(flatten)]
        pages: Pages,
    },
    /// Back up the running node's store: its webhooks and dead letters as the JSON lines
    /// `hookwire store export` writes (secrets sealed under `secrets.key`), which `store
    /// restore` and `store import` read. `serve` keeps delivering meanwhile. Needs an
    /// operator's token (`api.tokens`). The summary goes to stderr (`--json`: as JSON).
    Export {
        /// The file to write, complete or not at all (it is written aside, then renamed);
        /// standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The longest wait for the next chunk of an export.
const EXPORT_STALL: Duration = Duration::from_secs(60);

/// Prints what the token given may do.
pub async fn whoami(api: &ApiArgs) -> Result<()> {
    let reply = api.client()?.whoami().await?;
    if api.json {
        print_json(&reply.raw);
        return Ok(());
    }
    println!("{}", describe(&reply.value));
    Ok(())
}

/// Runs one `admin` subcommand and prints its answer.
pub async fn run(api: &ApiArgs, action: AdminAction) -> Result<()> {
    let client = api.client()?;
    let (limit, cursor, all) = match action {
        AdminAction::Orgs {
            pages: Pages { limit, cursor, all },
        } => (limit, cursor, all),
        AdminAction::Export { out } => return export(&client, out.as_deref(), api.json).await,
    };
    let (orgs, next_cursor) = if all {
        let orgs = follow_pages(cursor, async |cursor| {
            let page = client.orgs(cursor, limit).await?.value;
            Ok((page.orgs, page.next_cursor))
        })
        .await?;
        if api.json {
            return print_json_value(&OrgList {
                orgs,
                next_cursor: None,
            });
        }
        (orgs, None)
    } else {
        let reply = client.orgs(cursor, limit).await?;
        if api.json {
            print_json(&reply.raw);
            return Ok(());
        }
        (reply.value.orgs, reply.value.next_cursor)
    };
    if orgs.is_empty() {
        println!("No organization has webhooks.");
    }
    for org in orgs {
        println!("{org}");
    }
    if let Some(next) = next_cursor {
        // On stderr, so that the names alone go down a pipe.
        eprintln!("More organizations: add --cursor {next} (or --all for every page).");
    }
    Ok(())
}

/// How many entries of each kind an export held.
#[derive(Debug, Default)]
struct Received {
    webhooks: usize,
    dead_letters: usize,
}

/// Writes the node's export to `out` (standard output if `None`), then its summary.
async fn export(client: &ApiClient, out: Option<&Path>, json: bool) -> Result<()> {
    let response = client.store_export().await?;
    let received = match out {
        None => {
            let mut sink = std::io::BufWriter::new(std::io::stdout().lock());
            receive(response, &mut sink, json).await?
        }
        Some(path) => {
            // Written aside and renamed once whole: a file at `path` is always a complete
            // export.
            let mut aside = path.as_os_str().to_owned();
            aside.push(".partial");
            let aside = PathBuf::from(aside);
            let written = async {
                let file = std::fs::File::create(&aside)
                    .with_context(|| format!("cannot create {}", aside.display()))?;
                let mut sink = std::io::BufWriter::new(file);
                let received = receive(response, &mut sink, json).await?;
                let file = sink.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                std::fs::rename(&aside, path).with_context(|| {
                    format!("cannot rename {} to {}", aside.display(), path.display())
                })?;
                anyhow::Ok(received)
            }
            .await;
            if written.is_err() {
                let _ = std::fs::remove_file(&aside);
            }
            written?
        }
    };
    let Received {
        webhooks,
        dead_letters,
    } = received;
    let to = out.map_or("standard output".to_owned(), |p| p.display().to_string());
    // On stderr: standard output may be the export itself.
    if json {
        let done = serde_json::json!({
            "webhooks": webhooks,
            "dead_letters": dead_letters,
            "out": out.map(|p| p.display().to_string()),
        });
        eprintln!("{done}");
    } else {
        eprintln!("exported {webhooks} webhook(s) and {dead_letters} dead letter(s) to {to}");
    }
    Ok(())
}

/// Copies the export's body to `sink`, each line checked to be an entry of an export, and
/// counts them. An answer cut short (the connection, or the node's store failing) is an
/// error, as is one that stalls for [`EXPORT_STALL`].
async fn receive(
    mut response: reqwest::Response,
    sink: &mut impl Write,
    quiet: bool,
) -> Result<Received> {
    let progress = crate::progress::bar(None, "entries received", quiet);
    let mut received = Received::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut line = 0usize;
    loop {
        let chunk = tokio::time::timeout(EXPORT_STALL, response.chunk())
            .await
            .map_err(|_| anyhow!("the export stalled: nothing came for {EXPORT_STALL:?}"))?
            .context("the export was cut short")?;
        let Some(chunk) = chunk else { break };
        sink.write_all(&chunk)?;
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            line += 1;
            let entry = Entry::from_bytes(&pending[start..start + end]).with_context(|| {
                format!("line {line} of the answer is not an entry of a store export")
            })?;
            if entry.kind() == "upsert" {
                received.webhooks += 1;
            } else {
                received.dead_letters += 1;
            }
            progress.inc(1);
            start += end + 1;
        }
        pending.drain(..start);
    }
    progress.finish_and_clear();
    if !pending.is_empty() {
        bail!("the export ends within line {}: it was cut short", line + 1);
    }
    sink.flush()?;
    Ok(received)
}

/// One line: the kind of token, what it is limited to, and until when.
fn describe(who: &WhoAmI) -> String {
    let mut line = match &who.orgs {
        None => "operator: every organization and /v1/admin/*".to_owned(),
        Some(orgs) => format!("organization token for {}", orgs.join(", ")),
    };
    line.push_str(if who.read_only {
        "; read-only"
    } else {
        "; read-write"
    });
    if let Some(until) = &who.expires_at {
        line.push_str(&format!("; expires {until}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_says_the_reach_the_mode_and_the_expiry() {
        let operator = WhoAmI {
            kind: "operator".into(),
            orgs: None,
            read_only: false,
            expires_at: None,
        };
        assert_eq!(
            describe(&operator),
            "operator: every organization and /v1/admin/*; read-write"
        );
        let reader = WhoAmI {
            kind: "organization".into(),
            orgs: Some(vec!["acme".into(), "initech".into()]),
            read_only: true,
            expires_at: Some("2030-01-01T00:00:00.000Z".into()),
        };
        assert_eq!(
            describe(&reader),
            "organization token for acme, initech; read-only; expires 2030-01-01T00:00:00.000Z"
        );
    }
}
