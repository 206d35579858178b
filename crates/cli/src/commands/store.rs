//! `hookwire store`: maintenance of the store itself, with `serve` stopped (sled allows
//! one process per store directory), restoring an export into a node's own store, and
//! moving a store's state into a namespace's changes stream.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use hookwire_amqp::envelope::{Origin, Refused, StreamKey};
use hookwire_amqp::lapin::BasicProperties;
use hookwire_amqp::lapin::options::BasicAckOptions;
use hookwire_amqp::{ChangesStream, Publisher, Topology, stream};
use hookwire_core::Config;
use hookwire_store::Entry;

#[derive(Subcommand, Debug)]
pub enum StoreAction {
    /// Seal every signing secret again under `secrets.key`, so that the keys in
    /// `secrets.previous_keys` can be removed. Stop `serve` first.
    Reseal {
        /// A TOML file layered over the defaults (the one `serve` runs with).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the store's webhooks and dead letters as JSON lines, one changes-stream entry
    /// each, their secrets sealed under `secrets.key`: a backup, and what `store import`
    /// reads. Stop `serve` first.
    Export {
        /// A TOML file layered over the defaults (the one `serve` runs with).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The file to write; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the summary (on stderr, as always) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an export (of `store export` or `admin export`) into this node's store, which
    /// must hold no webhook or dead letter yet: restoring a node that is not replicated.
    /// Every line is checked before anything is written. The secrets are sealed under the
    /// exporting node's `secrets.key`, which this config must have. Stop `serve` first.
    Restore {
        /// A TOML file layered over the defaults (the one `serve` runs with).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The export to read.
        #[arg(long = "in")]
        input: PathBuf,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish an export to the namespace's changes stream, where every replicated node
    /// of the namespace applies it. Refused when the namespace holds other changes.
    Import {
        /// A TOML file layered over the defaults: the broker and namespace to import into.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The export to read; standard input if absent.
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How long the changes stream must stay quiet before an import has read all of it.
const QUIET: Duration = Duration::from_secs(1);

/// Runs one `store` subcommand and prints what it did.
pub async fn run(action: StoreAction) -> Result<()> {
    match action {
        StoreAction::Reseal { config, json } => {
            let config = load(config.as_deref())?;
            config.previous_secrets_keys()?;
            let store = open(&config)?;
            let count = store.reseal()?;
            let path = config.store.path.display();
            if json {
                let done = serde_json::json!({ "resealed": count, "store": path.to_string() });
                println!("{done}");
            } else {
                println!(
                    "resealed {count} webhook(s) in {path} under secrets.key; secrets.previous_keys can now be removed"
                );
            }
            Ok(())
        }
        StoreAction::Export { config, out, json } => {
            export(&load(config.as_deref())?, out.as_deref(), json)
        }
        StoreAction::Import {
            config,
            input,
            json,
        } => import(&load(config.as_deref())?, input.as_deref(), json).await,
        StoreAction::Restore {
            config,
            input,
            json,
        } => crate::commands::store_restore::restore(&load(config.as_deref())?, &input, json),
    }
}

pub(crate) fn load(file: Option<&Path>) -> Result<Config> {
    let figment = crate::config::layers(file)?;
    let config: Config = crate::config::extract(&figment, "")?;
    config.secrets_key()?;
    Ok(config)
}

pub(crate) fn open(config: &Config) -> Result<hookwire_store::Store> {
    hookwire_app::open_store(config)
        .context("cannot open the store (is `serve` still running? sled allows one process)")
}

fn export(config: &Config, out: Option<&Path>, json: bool) -> Result<()> {
    let store = open(config)?;
    let node = hookwire_app::node_id(config)?;
    let entries = store.export(uuid::Uuid::now_v7(), &node)?;
    let mut sink: Box<dyn Write> = match out {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let progress = crate::progress::bar(Some(entries.len() as u64), "entries written", json);
    for entry in &entries {
        sink.write_all(&entry.to_bytes()?)?;
        sink.write_all(b"\n")?;
        progress.inc(1);
    }
    sink.flush()?;
    progress.finish_and_clear();
    let webhooks = entries.iter().filter(|e| e.kind() == "upsert").count();
    let dead_letters = entries.len() - webhooks;
    let path = config.store.path.display();
    // On stderr: standard output may be the export itself.
    if json {
        let done = serde_json::json!({
            "webhooks": webhooks,
            "dead_letters": dead_letters,
            "store": path.to_string(),
        });
        eprintln!("{done}");
    } else {
        eprintln!("exported {webhooks} webhook(s) and {dead_letters} dead letter(s) from {path}");
    }
    Ok(())
}

async fn import(config: &Config, input: Option<&Path>, json: bool) -> Result<()> {
    config.amqp.validate()?;
    let mut text = String::new();
    match input {
        Some(path) => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            std::io::stdin().read_to_string(&mut text)?;
        }
    }
    let entries = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            Entry::from_bytes(line.as_bytes())
                .with_context(|| format!("line {}: not an entry of `hookwire store export`", i + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    let Some(seed) = entries.first().and_then(|e| e.seed) else {
        bail!("nothing to import: the input holds no entry of `hookwire store export`");
    };
    if let Some(i) = entries.iter().position(|e| e.seed != Some(seed)) {
        bail!(
            "entry {} belongs to another export: import one export at a time",
            i + 1
        );
    }
    let mut topology = Topology::of_config(config)?;
    topology.changes = Some(ChangesStream {
        max_age: config.replication.changes_max_age,
    });
    let name = topology.names.changes_stream();
    let connection = crate::config::brokers(&config.amqp)?
        .connect(&format!("{}@import", config.amqp.connection_name))
        .await
        .with_context(|| crate::config::unreachable(&config.amqp))?;
    let key =
        StreamKey::derive(&config.secrets_key()?).with_previous(&config.previous_secrets_keys()?);
    topology.declare_changes(&connection).await?;
    let reading = connection.create_channel().await?;
    let checking = crate::progress::bar(None, "reading the changes stream", json);
    let found = first_change(&reading, &name, &key).await?;
    checking.finish_and_clear();
    if let Some(found) = found {
        bail!(
            "namespace `{}` already holds changes (the first: `{}` by node `{}`): import into a fresh namespace",
            config.amqp.namespace,
            found.kind(),
            found.node
        );
    }
    let _ = reading.close(200, "read".into()).await;
    let publisher = Publisher::open(&connection, config.amqp.confirm_timeout).await?;
    // Sealed like a node's own entries, in one session of their own.
    let session = uuid::Uuid::now_v7();
    let progress = crate::progress::bar(Some(entries.len() as u64), "entries published", json);
    for (seq, entry) in (0u64..).zip(&entries) {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/octet-stream".into());
        let origin = Origin {
            node: entry.node.clone(),
            session,
            seq,
        };
        let sealed = key.seal(&name, &origin, &entry.to_bytes()?);
        publisher
            .publish("", &name, &sealed, properties)
            .await
            .context("publishing to the changes stream")?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let _ = connection.close(200, "imported".into()).await;
    if json {
        let done = serde_json::json!({
            "imported": entries.len(),
            "stream": name,
            "namespace": config.amqp.namespace,
        });
        println!("{done}");
    } else {
        println!(
            "imported {} entries into {name}; every replicated node of namespace `{}` applies them",
            entries.len(),
            config.amqp.namespace
        );
    }
    Ok(())
}

/// The first entry of the stream that is not a node's mark (an import run twice included),
/// read until the stream has been quiet for [`QUIET`]. Entries without an envelope (of an
/// older build) count; ones that fail their MAC do not.
async fn first_change(
    channel: &hookwire_amqp::lapin::Channel,
    name: &str,
    key: &StreamKey,
) -> Result<Option<Entry>> {
    use futures_util::StreamExt;
    let mut consumer = stream::consume_from(channel, name, None, 256).await?;
    while let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.next()).await {
        let delivery = delivery?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        let body = match key.open(name, &delivery.data) {
            Ok(opened) => opened.body,
            Err(Refused::Unsealed) => &delivery.data[..],
            Err(_) => continue,
        };
        match Entry::from_bytes(body) {
            Ok(entry) if entry.is_mark() => {}
            Ok(entry) => return Ok(Some(entry)),
            Err(e) => bail!("the changes stream holds an entry that is not one: {e}"),
        }
    }
    Ok(None)
}
