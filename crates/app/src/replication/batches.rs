//! The attempts and payloads streams' reader: one reader, parameterised by what it
//! applies ([`Batches`]). Each delivery is a batch, let through or refused by the
//! [`Guard`], and applied with its offset in one sled batch, so no flush is waited for: a
//! crash loses both together, and the batch is read again; applying a batch twice changes
//! nothing. A refused batch applies as an empty one: its offset is recorded.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hookwire_amqp::lapin::Connection;
use hookwire_amqp::lapin::options::BasicAckOptions;
use hookwire_amqp::{StreamBounds, stream};
use hookwire_store::{AttemptRecord, Change, Payload, Store, Writer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::guard::{Guard, Verdict};
use super::session::{keep_reading, park};
use super::settings::{StreamSettings, Which};

/// The window of the batch readers, whose every delivery is a batch of up to a thousand
/// bodies or records (hundreds of KiB): a window of 256 let a lagging reader hold tens
/// of MiB.
const BATCH_PREFETCH: u16 = 8;

/// What a batch stream's reader applies, and what it does around it.
pub(crate) trait Batches: Clone + Send + Sync + 'static {
    /// The stream.
    fn which(&self) -> Which;
    /// The offset of the last batch this node applied.
    fn applied_offset(&self, store: &Store) -> hookwire_store::Result<Option<u64>>;
    /// The change that applies the batch at `offset`, and how many items it holds.
    fn change(&self, batch: &[u8], offset: u64) -> hookwire_store::Result<(Change, usize)>;
    /// The change that records `offset` alone, for a batch refused.
    fn skip(&self, offset: u64) -> Change;
    /// Called when reading resumes after `offset`, and after each batch applied (`items`
    /// in it).
    fn applied(
        &self,
        store: &Store,
        offset: Option<u64>,
        items: usize,
    ) -> impl Future<Output = ()> + Send;
}

/// Applies the batches of `batches`' stream to this node's store, from the batch after
/// the last one applied, until `stop`; reconnects after any failure.
async fn read_stream(
    settings: StreamSettings,
    batches: impl Batches,
    store: Store,
    writer: Writer,
    stop: CancellationToken,
) {
    let label = batches.which().label();
    keep_reading(&settings, label, &stop, |connection| {
        let (settings, batches, store, writer, stop) = (
            settings.clone(),
            batches.clone(),
            store.clone(),
            writer.clone(),
            stop.clone(),
        );
        async move {
            let reader = Reader {
                settings: &settings,
                store: &store,
                writer: &writer,
                stop: &stop,
            };
            reader.read(&connection, &batches).await
        }
    })
    .await;
}

/// What a reader's session works with.
struct Reader<'a> {
    settings: &'a StreamSettings,
    store: &'a Store,
    /// Where a halt is noted, for `/readyz`.
    writer: &'a Writer,
    stop: &'a CancellationToken,
}

impl Reader<'_> {
    /// One batch at a time, acked (credit only; a stream is never nacked) once applied.
    /// At a batch this build does not know, the reader stops until `stop`.
    async fn read(&self, connection: &Connection, batches: &impl Batches) -> Result<(), String> {
        let (settings, store) = (self.settings, self.store);
        let which = batches.which();
        let label = which.label();
        which
            .declare(settings, connection)
            .await
            .map_err(|e| e.to_string())?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        let mut guard = Guard::load(store, label, which.name(settings), settings.key.clone())
            .map_err(|e| e.to_string())?;
        let applied = batches.applied_offset(store).map_err(|e| e.to_string())?;
        batches.applied(store, applied, 0).await;
        let from = applied.map(|n| n.saturating_add(1));
        let mut consumer =
            stream::consume_from(&channel, &which.name(settings), from, BATCH_PREFETCH)
                .await
                .map_err(|e| e.to_string())?;
        info!(from = ?from, "Reading the {label} stream.");
        loop {
            let delivery = tokio::select! {
                () = self.stop.cancelled() => return Ok(()),
                next = consumer.next() => next
                    .ok_or_else(|| format!("the {label} stream's consumer ended"))?
                    .map_err(|e| e.to_string())?,
            };
            let offset = stream::offset(delivery.properties.headers().as_ref())
                .ok_or_else(|| format!("a delivery of the {label} stream carries no offset"))?;
            if from.is_none_or(|from| offset >= from) {
                let (change, items, origin) = match guard.admit(&delivery.data, offset) {
                    Verdict::Apply { body, origin } => match batches.change(body, offset) {
                        Ok((change, items)) => (change, items, origin),
                        // Authentic, so written by a newer build: skipping it would diverge.
                        Err(e) => {
                            let what = format!("a batch this build cannot decode ({e})");
                            return park(self.writer, guard.halt(offset, &what), self.stop).await;
                        }
                    },
                    Verdict::Refuse => (batches.skip(offset), 0, None),
                    Verdict::Halt(problem) => return park(self.writer, problem, self.stop).await,
                };
                apply(store, change).await.map_err(|e| {
                    format!("a batch of the {label} stream could not be applied: {e}")
                })?;
                guard
                    .applied(store, origin.as_ref())
                    .map_err(|e| e.to_string())?;
                batches.applied(store, Some(offset), items).await;
            }
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
}

/// A batch applied off the async workers, with no flush: the batch and its offset are
/// one sled batch, so a crash loses both together and the batch is read again.
async fn apply(store: &Store, change: Change) -> Result<(), String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.apply(change))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The payloads stream: kept event bodies. Keeping a body is idempotent.
#[derive(Debug, Clone, Copy)]
struct PayloadBatches {
    bounds: StreamBounds,
}

impl Batches for PayloadBatches {
    fn which(&self) -> Which {
        Which::Payloads(self.bounds)
    }

    fn applied_offset(&self, store: &Store) -> hookwire_store::Result<Option<u64>> {
        store.payloads_applied_offset()
    }

    fn change(&self, batch: &[u8], offset: u64) -> hookwire_store::Result<(Change, usize)> {
        let payloads = Payload::decode_batch(batch)?;
        let items = payloads.len();
        Ok((Change::ApplyPayloads { payloads, offset }, items))
    }

    fn skip(&self, offset: u64) -> Change {
        Change::ApplyPayloads {
            payloads: Vec::new(),
            offset,
        }
    }

    async fn applied(&self, _store: &Store, _offset: Option<u64>, _items: usize) {}
}

/// Keeps the batches of the payloads stream in this node's store, from the batch after
/// the last one kept, until `stop`; reconnects after any failure.
pub(crate) async fn read_payloads(
    settings: StreamSettings,
    bounds: StreamBounds,
    store: Store,
    writer: Writer,
    stop: CancellationToken,
) {
    read_stream(settings, PayloadBatches { bounds }, store, writer, stop).await;
}

/// How a node keeps the attempts stream's records in its attempt log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptRetention {
    /// `store.attempt_retention`: the stream's `x-max-age`, and the log's.
    pub(crate) max_age: Duration,
    /// `store.attempts_per_webhook`.
    pub(crate) per_webhook: usize,
    /// `replication.attempts_max_bytes`: the stream's `x-max-length-bytes`.
    pub(crate) max_bytes: u64,
}

impl AttemptRetention {
    pub(crate) fn stream_bounds(self) -> StreamBounds {
        StreamBounds {
            max_age: self.max_age,
            max_bytes: self.max_bytes,
        }
    }
}

/// Attempts applied before the log is pruned by count as well: the attempt-log writer
/// prunes after the attempts this node made, this after every node's.
const PRUNE_AFTER_APPLIED: usize = 10_000;

/// The attempts stream: attempt records, applied to the attempt log and pruned by count
/// every [`PRUNE_AFTER_APPLIED`] records.
#[derive(Debug, Clone)]
struct AttemptBatches {
    retention: AttemptRetention,
    /// Shared by the reader's sessions.
    applied_since_prune: Arc<AtomicUsize>,
}

impl Batches for AttemptBatches {
    fn which(&self) -> Which {
        Which::Attempts(self.retention.stream_bounds())
    }

    fn applied_offset(&self, store: &Store) -> hookwire_store::Result<Option<u64>> {
        store.attempts_applied_offset()
    }

    fn change(&self, batch: &[u8], offset: u64) -> hookwire_store::Result<(Change, usize)> {
        let records = AttemptRecord::decode_batch(batch)?;
        let items = records.len();
        Ok((Change::ApplyAttempts { records, offset }, items))
    }

    fn skip(&self, offset: u64) -> Change {
        Change::ApplyAttempts {
            records: Vec::new(),
            offset,
        }
    }

    async fn applied(&self, store: &Store, offset: Option<u64>, items: usize) {
        crate::telemetry::attempts_applied(offset);
        if self.applied_since_prune.fetch_add(items, Ordering::Relaxed) + items
            < PRUNE_AFTER_APPLIED
        {
            return;
        }
        self.applied_since_prune.store(0, Ordering::Relaxed);
        // By the record times against this node's clock, as the writer prunes: which
        // attempts remain depends on their times, not on which node pruned.
        let older_than_ms = hookwire_core::now_ms()
            .saturating_sub(u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX));
        let prune = Change::PruneAttempts {
            older_than_ms,
            keep_per_webhook: self.retention.per_webhook,
        };
        if let Err(e) = apply(store, prune).await {
            warn!(error = %e, "Pruning the attempt log failed; tried again later.");
        }
    }
}

/// Applies the batches of the attempts stream to this node's attempt log, from the batch
/// after the last one applied, until `stop`; reconnects after any failure.
pub(crate) async fn read_attempts(
    settings: StreamSettings,
    retention: AttemptRetention,
    store: Store,
    writer: Writer,
    stop: CancellationToken,
) {
    let batches = AttemptBatches {
        retention,
        applied_since_prune: Arc::new(AtomicUsize::new(0)),
    };
    read_stream(settings, batches, store, writer, stop).await;
}
