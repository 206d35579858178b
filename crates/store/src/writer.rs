//! Group commit: writes that must be durable before someone is answered (API writes,
//! disabling a webhook, archiving a dead letter) share one flush. The flush runs on a
//! dedicated thread, off the async workers.
//!
//! sled's flush alone does not survive a power loss: it makes its writes stable with
//! `sync_file_range`, which flushes neither the drive's cache nor the file's metadata
//! (its size), and writes values too large for a segment to `blobs/` without any sync;
//! its own `sync_all` runs only every `flush_every_ms`, in the background. So after each
//! flush the writer calls `fsync` on sled's data file, on each blob file and on the
//! directories, before it answers.
//!
//! A replicated writer ([`Writer::replicated`]) applies nothing itself: it publishes each
//! change to the changes stream and answers once its own node has applied it from there
//! ([`Writer::apply_entry`], fed by the stream's reader), with the outcome decided there.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::store::{Entry, ReplicatedChange};
use crate::{Change, Error, Result, Store, Validate};

type Reply = oneshot::Sender<Result<()>>;

/// A request's outcome before the flush, its reply, and for an entry its id and offset.
type Applied = (Result<()>, Reply, Option<(Uuid, u64)>);

enum Request {
    /// A change of this node alone.
    Local(Change, Reply),
    /// An entry of the changes stream at its offset; the reply says whether it was
    /// applied (refusals included), or must be read again.
    Entry(Entry, u64, Reply),
}

/// Publishes entries to the changes stream, each confirmed by the broker.
pub trait Changelog: Send + Sync + std::fmt::Debug {
    /// Publishes one encoded entry; `Err` says why it was not.
    fn append(
        &self,
        entry: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// Where a node stands in the changes stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// This node's id.
    pub node: String,
    /// The offset of the last entry applied; `None` before the first.
    pub applied_offset: Option<u64>,
    /// Entries received from the stream and not applied yet.
    pub pending: u64,
    /// This node has applied the mark it wrote when it started: it holds every change
    /// made before then.
    pub caught_up: bool,
    /// Why this node stopped applying a replication stream ([`Writer::halt`]), until it
    /// restarts.
    pub halted: Vec<String>,
}

/// A replicated writer's state, shared by its clones and its thread.
#[derive(Debug)]
struct Replication {
    node: String,
    log: Arc<dyn Changelog>,
    /// Writes of this node, published and waiting to be applied, by entry id.
    waiting: Mutex<HashMap<Uuid, Reply>>,
    /// The last offset applied plus one; 0 before the first.
    applied: AtomicU64,
    pending: AtomicU64,
    caught_up: AtomicBool,
    apply_timeout: Duration,
    /// Checks every webhook an entry writes before it is applied.
    validate: Option<Validator>,
    halted: Mutex<Vec<String>>,
}

/// A [`Validate`], which `Debug` shows by name.
struct Validator(Validate);

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validator")
    }
}

/// Applies changes and answers once they are durable. Clones share one writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    requests: mpsc::Sender<Request>,
    /// Why the last batch could not be written, until a batch is written again.
    last_error: Arc<Mutex<Option<String>>>,
    store: Store,
    replication: Option<Arc<Replication>>,
}

impl Writer {
    /// Starts the writer thread for `store`. It ends when every clone is dropped.
    pub fn spawn(store: Store) -> Self {
        Self::start(store, None)
    }

    /// A writer whose changes go through the changes stream: `log` publishes them, and
    /// each commit answers once this node applied its entry (within `apply_timeout`).
    pub fn replicated(
        store: Store,
        node: &str,
        log: Arc<dyn Changelog>,
        apply_timeout: Duration,
    ) -> Result<Self> {
        Self::replicated_validated(store, node, log, apply_timeout, None)
    }

    /// [`Writer::replicated`], every webhook an entry writes checked by `validate` before
    /// it is applied ([`Store::apply_entry_validated`]).
    pub fn replicated_validated(
        store: Store,
        node: &str,
        log: Arc<dyn Changelog>,
        apply_timeout: Duration,
        validate: Option<Validate>,
    ) -> Result<Self> {
        let applied = store.applied_offset()?.map_or(0, |n| n.saturating_add(1));
        Ok(Self::start(
            store,
            Some(Arc::new(Replication {
                node: node.to_owned(),
                log,
                waiting: Mutex::default(),
                applied: AtomicU64::new(applied),
                pending: AtomicU64::new(0),
                caught_up: AtomicBool::new(false),
                apply_timeout,
                validate: validate.map(Validator),
                halted: Mutex::default(),
            })),
        ))
    }

    fn start(store: Store, replication: Option<Arc<Replication>>) -> Self {
        let (requests, inbox) = mpsc::channel::<Request>();
        let last_error = Arc::new(Mutex::new(None));
        let health = last_error.clone();
        let shared = replication.clone();
        let this_store = store.clone();
        std::thread::Builder::new()
            .name("hookwire-store-writer".into())
            .spawn(move || {
                let files = SledFiles::new(store.path());
                while let Ok(first) = inbox.recv() {
                    // Everything queued behind the first request rides the same flush.
                    let batch: Vec<Request> =
                        std::iter::once(first).chain(inbox.try_iter()).collect();
                    let applied: Vec<Applied> = batch
                        .into_iter()
                        .map(|request| match request {
                            Request::Local(change, reply) => (store.apply(change), reply, None),
                            Request::Entry(entry, offset, reply) => (
                                store.apply_entry_validated(
                                    &entry,
                                    offset,
                                    shared
                                        .as_ref()
                                        .and_then(|r| r.validate.as_ref().map(|v| &v.0)),
                                ),
                                reply,
                                Some((entry.id, offset)),
                            ),
                        })
                        .collect();
                    let flushed = store.flush().and_then(|()| files.sync());
                    let failed = match &flushed {
                        Err(e) => Some(e.to_string()),
                        // A write the store refused for its input (a missing webhook) says
                        // nothing about the disk; one that failed in sled does.
                        Ok(()) => applied.iter().find_map(|(r, _, _)| match r {
                            Err(e @ Error::Sled(_)) => Some(e.to_string()),
                            _ => None,
                        }),
                    };
                    *health.lock().unwrap_or_else(|e| e.into_inner()) = failed;
                    for (result, reply, entry) in applied {
                        let Some((id, offset)) = entry else {
                            let outcome = match (&result, &flushed) {
                                (Err(_), _) => result,
                                (Ok(()), Err(e)) => Err(Error::Flush(e.to_string())),
                                (Ok(()), Ok(())) => Ok(()),
                            };
                            let _ = reply.send(outcome);
                            continue;
                        };
                        // Applied (a refusal is applied too) and durable: the reader moves
                        // on, and the node that wrote it hears how it went.
                        let applied = match (&result, &flushed) {
                            (_, Err(e)) => Err(Error::Flush(e.to_string())),
                            (Err(e), Ok(())) if !e.is_decided() => {
                                Err(Error::Replication(format!("not applied: {e}")))
                            }
                            _ => Ok(()),
                        };
                        if let (Ok(()), Some(r)) = (&applied, &shared) {
                            r.applied
                                .fetch_max(offset.saturating_add(1), Ordering::SeqCst);
                            let waiter = r
                                .waiting
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(result);
                            }
                        }
                        let _ = reply.send(applied);
                    }
                }
            })
            .expect("the OS can start a thread");
        Self {
            requests,
            last_error,
            store: this_store,
            replication,
        }
    }

    /// Applies `change` and returns once it is durable: on this node, or, when replicated,
    /// once it is in the changes stream and this node has applied it from there.
    pub async fn commit(&self, change: Change) -> Result<()> {
        let Some(replication) = &self.replication else {
            return self.commit_local(change).await;
        };
        match self.store.replicated(change, &replication.node)? {
            ReplicatedChange::Local(change) => self.commit_local(change).await,
            ReplicatedChange::Replicated(entry) => self.append(replication, entry).await,
        }
    }

    async fn commit_local(&self, change: Change) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Local(change, reply))
            .map_err(|_| Error::WriterStopped)?;
        answer.await.map_err(|_| Error::WriterStopped)?
    }

    /// Publishes `entry` and waits until this node has applied it.
    async fn append(&self, replication: &Replication, entry: Entry) -> Result<()> {
        let id = entry.id;
        let bytes = entry.to_bytes()?;
        let (reply, answer) = oneshot::channel();
        let forget = || {
            replication
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id)
        };
        replication
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, reply);
        if let Err(e) = replication.log.append(bytes).await {
            forget();
            return Err(Error::Replication(format!(
                "the change could not be published to the changes stream: {e}"
            )));
        }
        match tokio::time::timeout(replication.apply_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::WriterStopped),
            Err(_) => {
                forget();
                Err(Error::Replication(format!(
                    "the change is in the changes stream but this node did not apply it within {:?}; it will be applied once the node catches up",
                    replication.apply_timeout
                )))
            }
        }
    }

    /// Writes this node's mark to the changes stream and returns once this node applied
    /// it: from then on it holds every change made before, and reports itself caught up.
    pub async fn catch_up(&self) -> Result<()> {
        let Some(replication) = &self.replication else {
            return Ok(());
        };
        self.append(replication, Entry::mark(&replication.node))
            .await?;
        replication.caught_up.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Hands the entry at `offset` of the changes stream to the writer thread. The answer
    /// is `Ok` once it is applied (or refused alike on every node) and durable; an `Err`
    /// means it was not, and must be read again. An entry that cannot be decoded is
    /// skipped, its offset recorded: it could not be applied on any node.
    pub fn apply_entry(&self, raw: &[u8], offset: u64) -> oneshot::Receiver<Result<()>> {
        let entry = Entry::from_bytes(raw).unwrap_or_else(|e| {
            tracing::error!(offset, error = %e, "An entry of the changes stream cannot be decoded; skipped.");
            Entry::mark("undecodable")
        });
        self.hand_over(entry, offset)
    }

    /// Records `offset` of the changes stream as applied, having changed nothing: for an
    /// entry refused before it reached the store. Answered like [`Writer::apply_entry`].
    pub fn skip_entry(&self, offset: u64) -> oneshot::Receiver<Result<()>> {
        self.hand_over(Entry::mark("refused"), offset)
    }

    fn hand_over(&self, entry: Entry, offset: u64) -> oneshot::Receiver<Result<()>> {
        let (reply, answer) = oneshot::channel();
        if let Some(r) = &self.replication {
            r.pending.fetch_add(1, Ordering::SeqCst);
        }
        // A stopped writer drops `reply`, which the receiver reads as an error.
        let _ = self.requests.send(Request::Entry(entry, offset, reply));
        answer
    }

    /// One entry handed over by [`Writer::apply_entry`] has been answered.
    pub fn entry_settled(&self) {
        if let Some(r) = &self.replication {
            let _ = r
                .pending
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }

    /// Where this node stands in the changes stream; `None` when not replicated.
    pub fn replication(&self) -> Option<ReplicationStatus> {
        self.replication.as_ref().map(|r| ReplicationStatus {
            node: r.node.clone(),
            applied_offset: r.applied.load(Ordering::SeqCst).checked_sub(1),
            pending: r.pending.load(Ordering::SeqCst),
            caught_up: r.caught_up.load(Ordering::SeqCst),
            halted: r.halted.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }

    /// Notes that this node stopped applying a replication stream, and why (`/readyz`
    /// shows it until the process restarts). Does nothing when not replicated.
    pub fn halt(&self, problem: String) {
        if let Some(r) = &self.replication {
            let mut halted = r.halted.lock().unwrap_or_else(|e| e.into_inner());
            if !halted.contains(&problem) {
                halted.push(problem);
            }
        }
    }

    /// `Err` with the reason while the store cannot be written: the last batch failed
    /// (a full disk, an I/O error), and none has been written since.
    pub fn health(&self) -> Result<(), String> {
        match self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// The files sled writes, as laid out by sled 0.34: the data file `db` (every segment),
/// `conf`, snapshots `snap.*`, and `blobs/<lsn>` for values too large for a segment.
struct SledFiles {
    dir: PathBuf,
}

impl SledFiles {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// `fsync`s the data file, every blob and both directories (new files' entries).
    fn sync(&self) -> Result<()> {
        let io = |e: std::io::Error| Error::Flush(e.to_string());
        File::open(self.dir.join("db"))
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        let blobs = self.dir.join("blobs");
        // Usually empty: a value goes to a blob only past a quarter of a segment.
        for entry in std::fs::read_dir(&blobs).map_err(io)? {
            let path = entry.map_err(io)?.path();
            match File::open(&path).and_then(|f| f.sync_all()) {
                Ok(()) => {}
                // sled removed it meanwhile (a blob rewritten or garbage-collected).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        for dir in [&blobs, &self.dir] {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}
