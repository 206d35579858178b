//! The one shape of the attempt log's and the payload archive's writers. Records are
//! gathered by a background task for [`Batched::LINGER`] (or until a batch is full) and written to
//! this node's store on the blocking pool, without a flush of their own and never on the
//! ack path: a crash can lose the last moments of them, never a delivery. With
//! replication, a batch is published to a stream instead, which every node (this one
//! included) reads into its own store; what the stream does not take is kept here and
//! counted. The same task runs the prunes.
//!
//! A stream message never exceeds [`STREAM_MESSAGE_MAX_BYTES`]: a larger batch is split,
//! and a record too large to go alone is kept on this node only.

use std::sync::Arc;
use std::time::Duration;

use hookwire_core::now_ms;
use hookwire_store::{Change, Changelog, Store};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Prunes run this often (and, for a kind with [`Batched::PRUNE_AFTER`], sooner).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The largest stream message a batch becomes: under the broker's `max_message_size`,
/// 16 MiB in deploy/rabbitmq/rabbitmq.conf (RabbitMQ's own default is larger), with a
/// MiB of room so that a broker set a little lower still takes every batch.
pub const STREAM_MESSAGE_MAX_BYTES: usize = 15 << 20;

/// What one writer writes, and how: its record, the store's change for a batch, a
/// batch's stream message, its prunes.
pub(crate) trait Batched: Send + Sync + 'static {
    type Record: Send + 'static;
    /// Records waiting to be written before new ones are dropped (and counted).
    const BUFFER: usize;
    /// Records gathered into one batch at most.
    const BATCH: usize;
    /// How long records are gathered before they are written: what a crash can lose.
    const LINGER: Duration;
    /// Records written after which the prunes run before their time; `None`: on time only.
    const PRUNE_AFTER: Option<usize>;
    /// Counts records lost: the writer was behind, or the store could not write them.
    const DROPPED_METRIC: &'static str;
    /// Counts records the stream did not take: kept on this node only.
    const UNPUBLISHED_METRIC: &'static str;
    /// The records, in log lines ("Attempt records", "Event bodies").
    const WHAT: &'static str;

    /// The change that writes `records` to this node's store.
    fn write(records: Vec<Self::Record>) -> Change;
    /// `records` as one stream message.
    fn encode(records: &[Self::Record]) -> hookwire_store::Result<Vec<u8>>;
    /// At least what `record` adds to an encoded batch, for splitting batches under
    /// [`STREAM_MESSAGE_MAX_BYTES`] before they are encoded.
    fn encoded_bytes_at_most(record: &Self::Record) -> usize;
    /// The changes that prune, run every [`PRUNE_EVERY`]; `early`: run sooner, after
    /// [`Batched::PRUNE_AFTER`] records, when only what grows with them is wanted.
    fn prunes(&self, early: bool) -> Vec<Change>;
}

enum Message<R> {
    Record(Box<R>),
    /// Answered once everything sent before it is written.
    Sync(oneshot::Sender<()>),
}

/// Sends records to a writer task. Clones share it.
pub(crate) struct BatchWriter<K: Batched> {
    tx: mpsc::Sender<Message<K::Record>>,
}

impl<K: Batched> Clone for BatchWriter<K> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<K: Batched> std::fmt::Debug for BatchWriter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("what", &K::WHAT)
            .finish_non_exhaustive()
    }
}

impl<K: Batched> BatchWriter<K> {
    /// Starts the writer task; it ends when every clone is dropped. With `stream`,
    /// batches are published to it rather than written here.
    pub(crate) fn spawn(kind: K, store: Store, stream: Option<Arc<dyn Changelog>>) -> Self {
        let (tx, rx) = mpsc::channel(K::BUFFER);
        tokio::spawn(write_loop(kind, store, stream, rx));
        Self { tx }
    }

    /// Queues one record. Never waits: when the writer is behind, it is dropped (counted).
    pub(crate) fn send(&self, record: K::Record) {
        if self.tx.try_send(Message::Record(Box::new(record))).is_err() {
            metrics::counter!(K::DROPPED_METRIC).increment(1);
        }
    }

    /// Waits until every record sent so far is written (graceful shutdown, tests).
    pub(crate) async fn sync(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Sync(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop<K: Batched>(
    kind: K,
    store: Store,
    stream: Option<Arc<dyn Changelog>>,
    mut rx: mpsc::Receiver<Message<K::Record>>,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut written_since_prune = 0;
    loop {
        let first = tokio::select! {
            message = rx.recv() => match message {
                Some(message) => message,
                None => return,
            },
            _ = prune.tick() => {
                prune_now(&kind, &store, false).await;
                written_since_prune = 0;
                continue;
            }
        };
        // Gather for a moment: sled charges per insert, so batching is most of a writer's
        // cost (docs/performance.md). The task sleeps rather than waiting on the channel,
        // which would wake it for every record.
        if matches!(first, Message::Record(_)) && rx.len() < K::BATCH {
            tokio::time::sleep(K::LINGER).await;
        }
        let (mut records, mut syncs) = (Vec::new(), Vec::new());
        let mut open = true;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Record(r) => records.push(*r),
                // A sync (shutdown) is answered once what is gathered is written.
                Message::Sync(done) => syncs.push(done),
            }
            if records.len() < K::BATCH {
                match rx.try_recv() {
                    Ok(message) => next = Some(message),
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
        }
        if !records.is_empty() {
            written_since_prune += records.len();
            let unpublished = match &stream {
                None => records,
                Some(stream) => publish::<K>(stream.as_ref(), records).await,
            };
            if !unpublished.is_empty() {
                let n = unpublished.len();
                if let Err(e) = apply(&store, K::write(unpublished)).await {
                    metrics::counter!(K::DROPPED_METRIC).increment(n as u64);
                    warn!(error = %e, lost = n, "{} could not be written; they are lost.", K::WHAT);
                }
            }
        }
        for done in syncs {
            let _ = done.send(());
        }
        // sled's memory follows what it holds, so pruning by count as well as by time
        // bounds serve's memory under load (docs/history.md, "Memory").
        if K::PRUNE_AFTER.is_some_and(|after| written_since_prune >= after) {
            prune_now(&kind, &store, true).await;
            prune.reset();
            written_since_prune = 0;
        }
        if !open {
            return;
        }
    }
}

/// Publishes `records` as stream messages of at most [`STREAM_MESSAGE_MAX_BYTES`]; what
/// could not be published is returned, to keep on this node (counted): a read through
/// this node still finds it, the other nodes' do not.
async fn publish<K: Batched>(stream: &dyn Changelog, records: Vec<K::Record>) -> Vec<K::Record> {
    let mut kept = Vec::new();
    for chunk in split_under::<K>(records, STREAM_MESSAGE_MAX_BYTES) {
        let published = match stream_message::<K>(&chunk) {
            Ok(bytes) => stream.append(bytes).await,
            Err(e) => Err(e),
        };
        // Published: this node keeps them as it reads the stream.
        if let Err(e) = published {
            metrics::counter!(K::UNPUBLISHED_METRIC).increment(chunk.len() as u64);
            warn!(error = %e, kept_here = chunk.len(), "{} could not be published to their stream; kept on this node only.", K::WHAT);
            kept.extend(chunk);
        }
    }
    kept
}

/// `records` as one stream message, refused over [`STREAM_MESSAGE_MAX_BYTES`].
pub(crate) fn stream_message<K: Batched>(records: &[K::Record]) -> Result<Vec<u8>, String> {
    let bytes = K::encode(records).map_err(|e| e.to_string())?;
    if bytes.len() > STREAM_MESSAGE_MAX_BYTES {
        return Err(format!(
            "{} bytes encoded, more than a stream message takes ({STREAM_MESSAGE_MAX_BYTES})",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// `records` in order, in runs whose [`Batched::encoded_bytes_at_most`] add up to `max`
/// at most; a record over `max` alone is a run of its own.
pub(crate) fn split_under<K: Batched>(records: Vec<K::Record>, max: usize) -> Vec<Vec<K::Record>> {
    // The brackets of the batch's encoding.
    const FRAME: usize = 2;
    let mut runs = Vec::new();
    let (mut run, mut bytes) = (Vec::new(), FRAME);
    for record in records {
        let size = K::encoded_bytes_at_most(&record);
        if !run.is_empty() && bytes.saturating_add(size) > max {
            runs.push(std::mem::take(&mut run));
            bytes = FRAME;
        }
        bytes = bytes.saturating_add(size);
        run.push(record);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

async fn prune_now<K: Batched>(kind: &K, store: &Store, early: bool) {
    for change in kind.prunes(early) {
        if let Err(e) = apply(store, change).await {
            warn!(error = %e, "Pruning {} failed; tried again later.", K::WHAT.to_lowercase());
        }
    }
}

/// Applies `change` to the store on the blocking pool, without a flush: nothing waits
/// for these writes to be durable.
async fn apply(store: &Store, change: Change) -> hookwire_store::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.apply(change))
        .await
        .unwrap_or(Err(hookwire_store::Error::WriterStopped))
}

/// The time (ms) `age` ago.
pub(crate) fn before(age: Duration) -> u64 {
    now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
}

/// At most the bytes of `text` in JSON: an escaped character takes six.
pub(crate) fn json_text_bytes_at_most(text: &str) -> usize {
    text.len().saturating_mul(6).saturating_add(2)
}

/// At most the bytes of `bytes` in standard base64, quoted.
pub(crate) fn base64_bytes_at_most(bytes: usize) -> usize {
    bytes.div_ceil(3).saturating_mul(4).saturating_add(2)
}
