//! `hookwire store restore`: an export written into a node's own empty store, with `serve`
//! stopped, each entry applied as the changes stream's reader applies it
//! ([`Store::restore_entry`]) and checked first as it checks one.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hookwire_core::Config;
use hookwire_store::{Entry, Validate};

use super::store::open;

/// Restores the export at `input` into the store `config` names, and prints what it did.
pub fn restore(config: &Config, input: &Path, json: bool) -> Result<()> {
    if config.replication.enabled {
        bail!(
            "replication.enabled is true: a replicated node's store follows the namespace's changes stream, and a restore would not reach the other nodes. Restore a cluster with `hookwire store import` into a fresh namespace"
        );
    }
    let store = open(config)?;
    let path = config.store.path.display().to_string();
    if store.holds_anything()? {
        bail!(
            "the store at {path} already holds webhooks or dead letters: restore writes into an empty store only (stop `serve`, move that directory aside or point store.path at a new one, and restore again)"
        );
    }
    let validate = validator(config)?;
    // Everything is checked before anything is written: a refused line leaves the store
    // as empty as it was.
    let mut seed = None;
    let (mut webhooks, mut dead_letters) = (0usize, 0usize);
    each_entry(input, |line, entry| {
        match seed {
            None => seed = Some(entry.seed),
            Some(first) if first != entry.seed => {
                bail!("line {line} belongs to another export: restore one export at a time")
            }
            Some(_) => {}
        }
        store
            .check_restorable(&entry, Some(&validate))
            .map_err(|e| explain(line, e))?;
        if entry.kind() == "upsert" {
            webhooks += 1;
        } else {
            dead_letters += 1;
        }
        Ok(())
    })?;
    if seed.is_none() {
        bail!(
            "nothing to restore: {} holds no entry of a store export",
            input.display()
        );
    }
    let progress = crate::progress::bar(
        Some((webhooks + dead_letters) as u64),
        "entries restored",
        json,
    );
    each_entry(input, |line, entry| {
        store.restore_entry(&entry).map_err(|e| explain(line, e))?;
        progress.inc(1);
        Ok(())
    })?;
    store.flush()?;
    progress.finish_and_clear();
    if json {
        let done = serde_json::json!({
            "webhooks": webhooks,
            "dead_letters": dead_letters,
            "store": path,
        });
        println!("{done}");
    } else {
        println!(
            "restored {webhooks} webhook(s) and {dead_letters} dead letter(s) into {path}; start `serve` on it"
        );
    }
    Ok(())
}

/// The check the changes stream's reader makes of each webhook an entry writes: the API's
/// own, under this node's target policy and catalog.
fn validator(config: &Config) -> Result<Validate> {
    let policy = config.target_policy();
    let catalog = hookwire_app::catalog(&config.catalog)?;
    Ok(Arc::new(move |new, current| {
        new.and_then(|new| {
            hookwire_api::webhooks::check_replicated(new, current, &policy, &catalog)
        })
    }))
}

/// Calls `f` with each entry of the export at `input` and its line number (from 1);
/// blank lines are skipped. One line is held at a time.
fn each_entry(input: &Path, mut f: impl FnMut(usize, Entry) -> Result<()>) -> Result<()> {
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut raw = Vec::new();
    for line in 1.. {
        raw.clear();
        if reader
            .read_until(b'\n', &mut raw)
            .with_context(|| format!("cannot read {}", input.display()))?
            == 0
        {
            return Ok(());
        }
        if raw.trim_ascii().is_empty() {
            continue;
        }
        let entry = Entry::from_bytes(raw.trim_ascii_end()).with_context(|| {
            format!("line {line}: not an entry of a store export (cut short or damaged?)")
        })?;
        f(line, entry)?;
    }
    Ok(())
}

/// A store refusal of the entry at `line`, in the operator's words.
fn explain(line: usize, e: hookwire_store::Error) -> anyhow::Error {
    match e {
        hookwire_store::Error::Unseal => anyhow::anyhow!(
            "line {line}: its webhook's secrets do not open under secrets.key (nor secrets.previous_keys): restore with the secrets.key of the node that exported it"
        ),
        hookwire_store::Error::Refused(why) => anyhow::anyhow!("line {line}: refused: {why}"),
        other => anyhow::Error::new(other).context(format!("line {line}")),
    }
}
