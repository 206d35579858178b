//! The node's two sides of the changes stream: [`StreamChangelog`] publishes this node's
//! writes to it, and [`read_changes`] applies every node's writes from it into this
//! node's store, in the stream's order, resuming after the last offset applied.
//! [`share_health`] publishes its webhooks' health transitions at an interval.
//!
//! Both use connections of their own: a stream answers a `basic.nack` with an error that
//! closes the whole connection, so nothing here shares one with the delivery channels.
//! On a cluster each connects to any node and moves to the next after a failure; every
//! node holds the same offsets, so the reader resumes where it was on whichever it reaches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use hookwire_amqp::lapin::options::BasicAckOptions;
use hookwire_amqp::lapin::{BasicProperties, Connection};
use hookwire_amqp::{Brokers, Publisher, Topology, stream};
use hookwire_store::{Change, Changelog, Store, Writer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Entries received from the stream and not yet acked: the reader's window.
const PREFETCH: u16 = 256;
/// The window of the payloads and attempts readers, whose every delivery is a batch of
/// up to a thousand bodies or records (hundreds of KiB): a window of 256 let a lagging
/// reader hold tens of MiB.
const BATCH_PREFETCH: u16 = 8;

/// The frame size the stream connections ask for. They carry only hookwire's own entries,
/// whose headers are a few hundred bytes, so small frames are safe, and they keep lapin's
/// buffers at 1 MiB a connection instead of 8 (a node opens six of them).
const STREAM_FRAME_MAX: u32 = 16 * 1024;

/// The most webhooks whose health one entry shares: an entry stays small (about 100
/// bytes each), and a burst of flips takes several entries, not one huge one.
const HEALTH_BATCH: usize = 1000;

/// How long the last sharing at shutdown may take.
const LAST_SHARE: Duration = Duration::from_secs(5);

/// How a node reaches its changes stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    /// The broker URLs; the reader and the writer each rotate over them on their own.
    pub(crate) urls: Vec<String>,
    /// This node's connection name; each connection adds what it does.
    pub(crate) connection_name: String,
    pub(crate) topology: Topology,
    pub(crate) confirm_timeout: Duration,
    pub(crate) reconnect_max_delay: Duration,
    /// `replication.health_interval`.
    pub(crate) health_interval: Duration,
}

/// Which stream a publisher or a reader serves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    /// The store's changes.
    Changes,
    /// Kept event bodies, with their retention as the stream's `x-max-age`.
    Payloads(Duration),
    /// Attempt records, with the attempt log's retention as the stream's `x-max-age`.
    Attempts(Duration),
}

impl StreamSettings {
    fn stream(&self) -> String {
        self.topology.names.changes_stream()
    }

    fn brokers(&self) -> Brokers {
        Brokers::new(self.urls.clone()).with_frame_max(STREAM_FRAME_MAX)
    }
}

impl Which {
    fn name(self, settings: &StreamSettings) -> String {
        match self {
            Self::Changes => settings.stream(),
            Self::Payloads(_) => settings.topology.names.payloads_stream(),
            Self::Attempts(_) => settings.topology.names.attempts_stream(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Changes => "changes",
            Self::Payloads(_) => "payloads",
            Self::Attempts(_) => "attempts",
        }
    }

    async fn declare(
        self,
        settings: &StreamSettings,
        channel: &hookwire_amqp::lapin::Channel,
    ) -> hookwire_amqp::Result<()> {
        match self {
            Self::Changes => settings.topology.declare_changes(channel).await,
            Self::Payloads(retention) => {
                settings.topology.declare_payloads(channel, retention).await
            }
            Self::Attempts(retention) => {
                settings.topology.declare_attempts(channel, retention).await
            }
        }
    }
}

/// The first wait before publishing again to a stream that is not ready; it doubles up to
/// [`NOT_READY_LAST_DELAY`], about 3 s in all, well within an API write's timeout.
const NOT_READY_FIRST_DELAY: Duration = Duration::from_millis(100);
const NOT_READY_LAST_DELAY: Duration = Duration::from_millis(1600);

/// Whether a publish failed because the stream has no writer yet: on a cluster, RabbitMQ
/// (3.10.8) answers `queue.declare` of a new stream once the stream is recorded, and
/// starts its writer and replicas after that. For a few hundred milliseconds a publish is
/// then refused with 506 `RESOURCE_ERROR - Stream not found`, or crashes the channel on
/// the writer it does not know yet, which closes the connection with 541
/// `INTERNAL_ERROR`. Neither stores the message, so publishing again does not write the
/// change twice.
fn stream_not_ready(e: &hookwire_amqp::Error) -> bool {
    use hookwire_amqp::lapin::ErrorKind;
    use hookwire_amqp::lapin::protocol::{AMQPErrorKind, AMQPHardError};
    let hookwire_amqp::Error::Amqp(e) = e else {
        return false;
    };
    let ErrorKind::ProtocolError(amqp) = e.kind() else {
        return false;
    };
    match amqp.kind() {
        AMQPErrorKind::Hard(AMQPHardError::INTERNALERROR) => true,
        AMQPErrorKind::Hard(AMQPHardError::RESOURCEERROR) => {
            amqp.get_message().as_str().contains("Stream not found")
        }
        _ => false,
    }
}

/// Publishes entries to the changes stream over a connection of its own, opened on first
/// use and again after a failure.
#[derive(Debug)]
pub(crate) struct StreamChangelog {
    settings: StreamSettings,
    which: Which,
    brokers: Brokers,
    open: tokio::sync::Mutex<Option<(Connection, Publisher)>>,
}

impl StreamChangelog {
    pub(crate) fn new(settings: StreamSettings, which: Which) -> Self {
        Self {
            brokers: settings.brokers(),
            settings,
            which,
            open: tokio::sync::Mutex::new(None),
        }
    }

    /// The publisher, connecting first if need be.
    async fn publisher(&self) -> Result<Publisher, String> {
        let mut open = self.open.lock().await;
        if let Some((connection, publisher)) = open.as_ref()
            && connection.status().connected()
        {
            return Ok(publisher.clone());
        }
        let name = format!(
            "{} {} writer",
            self.settings.connection_name,
            self.which.label()
        );
        let connection = self
            .brokers
            .connect(&name)
            .await
            .map_err(|e| e.to_string())?;
        let publisher = Publisher::open(&connection, self.settings.confirm_timeout)
            .await
            .map_err(|e| e.to_string())?;
        self.which
            .declare(&self.settings, publisher.channel())
            .await
            .map_err(|e| e.to_string())?;
        *open = Some((connection, publisher.clone()));
        Ok(publisher)
    }
}

impl Changelog for StreamChangelog {
    fn append(
        &self,
        entry: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let mut delay = NOT_READY_FIRST_DELAY;
            loop {
                let publisher = self.publisher().await?;
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into());
                let published = publisher
                    .publish("", &self.which.name(&self.settings), &entry, properties)
                    .await;
                let Err(e) = published else {
                    return Ok(());
                };
                // The connection is closed (or broken): the next try opens a new one.
                *self.open.lock().await = None;
                if stream_not_ready(&e) && delay <= NOT_READY_LAST_DELAY {
                    warn!(error = %e, stream = %self.which.name(&self.settings), "The stream is not ready yet (just declared); publishing again.");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
                // The next append opens a new connection, on the next node: the write is
                // reported failed, never assumed.
                self.brokers.rotate();
                return Err(e.to_string());
            }
        })
    }
}

/// Applies the changes stream to the store through `writer`, from the entry after the
/// last one applied, until `stop`; reconnects after any failure.
pub(crate) async fn read_changes(
    settings: StreamSettings,
    store: Store,
    writer: Writer,
    stop: CancellationToken,
) {
    keep_reading(&settings, "changes", &stop, |connection| {
        let (settings, store, writer, stop) = (
            settings.clone(),
            store.clone(),
            writer.clone(),
            stop.clone(),
        );
        async move {
            let result = read_entries(&connection, &settings, &store, &writer, &stop).await;
            // Entries handed over and not answered are read again by the next session.
            for _ in 0..writer.replication().map_or(0, |s| s.pending) {
                writer.entry_settled();
            }
            result
        }
    })
    .await;
}

/// Reads the `what` stream, `read` once per connection of its own (closed after it,
/// whatever happened), until `read` returns `Ok` (at `stop`); after a failure, again on
/// a new connection, the delay doubling up to `amqp.reconnect_max_delay`.
async fn keep_reading<F>(
    settings: &StreamSettings,
    what: &str,
    stop: &CancellationToken,
    mut read: impl FnMut(Arc<Connection>) -> F,
) where
    F: Future<Output = Result<(), String>>,
{
    const FIRST_DELAY: Duration = Duration::from_millis(100);
    let mut delay = FIRST_DELAY;
    let brokers = settings.brokers();
    loop {
        let started = std::time::Instant::now();
        let session = async {
            let name = format!("{} {what} reader", settings.connection_name);
            let connection = Arc::new(brokers.connect(&name).await.map_err(|e| e.to_string())?);
            let result = read(connection.clone()).await;
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                connection.close(200, format!("{what} reader stopped").into()),
            )
            .await;
            result
        };
        match session.await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "Reading the {what} stream failed; reading again.");
                brokers.rotate();
            }
        }
        // A session that lasted ended by a failover, not a failing broker: start the
        // backoff again, so that the node's writes (which wait for their own entry) are
        // not held for up to reconnect_max_delay.
        if started.elapsed() > Duration::from_secs(10) {
            delay = FIRST_DELAY;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(settings.reconnect_max_delay);
    }
}

/// Entries are handed to the writer in the stream's order, and each is acked (which only
/// returns credit) once applied.
async fn read_entries(
    connection: &Connection,
    settings: &StreamSettings,
    store: &Store,
    writer: &Writer,
    stop: &CancellationToken,
) -> Result<(), String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    settings
        .topology
        .declare_changes(&channel)
        .await
        .map_err(|e| e.to_string())?;
    let from = store
        .applied_offset()
        .map_err(|e| e.to_string())?
        .map(|n| n.saturating_add(1));
    let mut consumer = stream::consume_from(&channel, &settings.stream(), from, PREFETCH)
        .await
        .map_err(|e| e.to_string())?;
    info!(from = ?from, "Reading the changes stream.");
    let mut in_flight = FuturesOrdered::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = consumer.next() => {
                let delivery = next
                    .ok_or_else(|| "the changes stream's consumer ended".to_owned())?
                    .map_err(|e| e.to_string())?;
                let offset = stream::offset(delivery.properties.headers().as_ref())
                    .ok_or_else(|| "a delivery of the changes stream carries no offset".to_owned())?;
                if from.is_some_and(|from| offset < from) {
                    // A resumed read starts at its chunk's first entry.
                    delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    continue;
                }
                let answer = writer.apply_entry(&delivery.data, offset);
                let acker = delivery.acker;
                in_flight.push_back(async move { (answer.await, acker) });
            }
            Some((answered, acker)) = in_flight.next(), if !in_flight.is_empty() => {
                writer.entry_settled();
                match answered {
                    Ok(Ok(())) => {
                        acker
                            .ack(BasicAckOptions::default())
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(Err(e)) => return Err(format!("an entry could not be applied: {e}")),
                    Err(_) => return Err("the store writer has stopped".to_owned()),
                }
                if let Some(status) = writer.replication() {
                    crate::telemetry::replication(&status);
                }
            }
        }
    }
}

/// Writes this node's mark and waits until it is applied, retrying until `stop`: the
/// node then holds every change made before it started. `false` if stopped first.
pub(crate) async fn catch_up(writer: &Writer, stop: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(200);
    loop {
        let done = tokio::select! {
            done = writer.catch_up() => done,
            () = stop.cancelled() => return false,
        };
        match done {
            Ok(()) => {
                if let Some(status) = writer.replication() {
                    crate::telemetry::replication(&status);
                    info!(applied_offset = ?status.applied_offset, "Caught up with the changes stream.");
                }
                return true;
            }
            Err(e) => warn!(error = %e, "Not caught up with the changes stream yet; trying again."),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return false,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Shares the health transitions this node notes ([`Store::take_health_transitions`])
/// through the changes stream every `every`, and once more at `stop`. Transitions that
/// could not be shared are noted again for the next time.
pub(crate) async fn share_health(
    store: Store,
    writer: Writer,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => share_noted(&store, &writer).await,
            () = stop.cancelled() => {
                let _ = tokio::time::timeout(LAST_SHARE, share_noted(&store, &writer)).await;
                return;
            }
        }
    }
}

/// Shares everything noted, an entry per [`HEALTH_BATCH`] webhooks.
async fn share_noted(store: &Store, writer: &Writer) {
    loop {
        let taking = store.clone();
        let taken =
            match tokio::task::spawn_blocking(move || taking.take_health_transitions(HEALTH_BATCH))
                .await
            {
                Ok(Ok(taken)) => taken,
                Ok(Err(e)) => {
                    return warn!(error = %e, "Cannot read the webhooks' health to share it.");
                }
                Err(e) => return warn!(error = %e, "Reading the webhooks' health panicked."),
            };
        if taken.is_empty() {
            return;
        }
        let count = taken.len();
        if let Err(e) = writer.commit(Change::ShareHealth(taken.clone())).await {
            store.note_health_transitions(&taken);
            return warn!(error = %e, "Cannot share health transitions; trying again later.");
        }
        debug!(webhooks = count, "Health transitions shared.");
        if count < HEALTH_BATCH {
            return;
        }
    }
}

/// A shared handle for the changes stream's publisher (or, with `Which::Payloads` or
/// `Which::Attempts`, that stream's).
pub(crate) fn changelog(settings: StreamSettings, which: Which) -> Arc<dyn Changelog> {
    Arc::new(StreamChangelog::new(settings, which))
}

/// Keeps the batches of the payloads stream in this node's store, from the batch after
/// the last one kept, until `stop`; reconnects after any failure. Keeping a body is
/// idempotent, so a batch read twice changes nothing.
pub(crate) async fn read_payloads(
    settings: StreamSettings,
    retention: Duration,
    store: Store,
    stop: CancellationToken,
) {
    keep_reading(&settings, "payloads", &stop, |connection| {
        let (settings, store, stop) = (settings.clone(), store.clone(), stop.clone());
        async move { read_payload_batches(&connection, &settings, retention, &store, &stop).await }
    })
    .await;
}

/// One batch at a time, acked (credit only; a stream is never nacked) once kept.
async fn read_payload_batches(
    connection: &Connection,
    settings: &StreamSettings,
    retention: Duration,
    store: &Store,
    stop: &CancellationToken,
) -> Result<(), String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let which = Which::Payloads(retention);
    which
        .declare(settings, &channel)
        .await
        .map_err(|e| e.to_string())?;
    let from = store
        .payloads_applied_offset()
        .map_err(|e| e.to_string())?
        .map(|n| n.saturating_add(1));
    let mut consumer = stream::consume_from(&channel, &which.name(settings), from, BATCH_PREFETCH)
        .await
        .map_err(|e| e.to_string())?;
    info!(from = ?from, "Reading the payloads stream.");
    loop {
        let delivery = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = consumer.next() => next
                .ok_or_else(|| "the payloads stream's consumer ended".to_owned())?
                .map_err(|e| e.to_string())?,
        };
        let offset = stream::offset(delivery.properties.headers().as_ref())
            .ok_or_else(|| "a delivery of the payloads stream carries no offset".to_owned())?;
        if from.is_none_or(|from| offset >= from) {
            let payloads = hookwire_store::Payload::decode_batch(&delivery.data).unwrap_or_else(|e| {
                warn!(offset, error = %e, "A batch of the payloads stream cannot be decoded; skipped.");
                Vec::new()
            });
            // The batch and its offset are one sled batch, so no flush is waited for: a
            // crash loses both together, and the batch is read again.
            apply(
                store,
                hookwire_store::Change::ApplyPayloads { payloads, offset },
            )
            .await
            .map_err(|e| format!("a batch of event bodies could not be kept: {e}"))?;
        }
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }
}

/// How a node keeps the attempts stream's records in its attempt log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptRetention {
    /// `store.attempt_retention`: the stream's `x-max-age`, and the log's.
    pub(crate) max_age: Duration,
    /// `store.attempts_per_webhook`.
    pub(crate) per_webhook: usize,
}

/// Attempts applied before the log is pruned by count as well: the attempt-log writer
/// prunes after the attempts this node made, this after every node's.
const PRUNE_AFTER_APPLIED: usize = 10_000;

/// Applies the batches of the attempts stream to this node's attempt log, from the batch
/// after the last one applied, until `stop`; reconnects after any failure. Each batch and
/// its offset are one sled write, so a batch read twice changes nothing.
pub(crate) async fn read_attempts(
    settings: StreamSettings,
    retention: AttemptRetention,
    store: Store,
    stop: CancellationToken,
) {
    let applied_since_prune = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    keep_reading(&settings, "attempts", &stop, |connection| {
        let (settings, store, stop, applied_since_prune) = (
            settings.clone(),
            store.clone(),
            stop.clone(),
            applied_since_prune.clone(),
        );
        async move {
            read_attempt_batches(
                &connection,
                &settings,
                retention,
                &store,
                &stop,
                &applied_since_prune,
            )
            .await
        }
    })
    .await;
}

/// One batch at a time, acked (credit only; a stream is never nacked) once applied.
async fn read_attempt_batches(
    connection: &Connection,
    settings: &StreamSettings,
    retention: AttemptRetention,
    store: &Store,
    stop: &CancellationToken,
    applied_since_prune: &std::sync::atomic::AtomicUsize,
) -> Result<(), String> {
    use std::sync::atomic::Ordering;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let which = Which::Attempts(retention.max_age);
    which
        .declare(settings, &channel)
        .await
        .map_err(|e| e.to_string())?;
    let applied = store.attempts_applied_offset().map_err(|e| e.to_string())?;
    crate::telemetry::attempts_applied(applied);
    let from = applied.map(|n| n.saturating_add(1));
    let mut consumer = stream::consume_from(&channel, &which.name(settings), from, BATCH_PREFETCH)
        .await
        .map_err(|e| e.to_string())?;
    info!(from = ?from, "Reading the attempts stream.");
    loop {
        let delivery = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = consumer.next() => next
                .ok_or_else(|| "the attempts stream's consumer ended".to_owned())?
                .map_err(|e| e.to_string())?,
        };
        let offset = stream::offset(delivery.properties.headers().as_ref())
            .ok_or_else(|| "a delivery of the attempts stream carries no offset".to_owned())?;
        if from.is_none_or(|from| offset >= from) {
            let records = hookwire_store::AttemptRecord::decode_batch(&delivery.data)
                .unwrap_or_else(|e| {
                    warn!(offset, error = %e, "A batch of the attempts stream cannot be decoded; skipped.");
                    Vec::new()
                });
            let n = records.len();
            apply(
                store,
                hookwire_store::Change::ApplyAttempts { records, offset },
            )
            .await
            .map_err(|e| format!("a batch of attempts could not be applied: {e}"))?;
            crate::telemetry::attempts_applied(Some(offset));
            if applied_since_prune.fetch_add(n, Ordering::Relaxed) + n >= PRUNE_AFTER_APPLIED {
                applied_since_prune.store(0, Ordering::Relaxed);
                // By the record times against this node's clock, as the writer prunes:
                // which attempts remain depends on their times, not on which node pruned.
                let older_than_ms = hookwire_core::now_ms().saturating_sub(
                    u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX),
                );
                let prune = hookwire_store::Change::PruneAttempts {
                    older_than_ms,
                    keep_per_webhook: retention.per_webhook,
                };
                if let Err(e) = apply(store, prune).await {
                    warn!(error = %e, "Pruning the attempt log failed; tried again later.");
                }
            }
        }
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }
}

/// A batch of the payloads or attempts stream applied off the async workers, with no
/// flush: the batch and its offset are one sled batch, so a crash loses both together and
/// the batch is read again.
async fn apply(store: &Store, change: hookwire_store::Change) -> Result<(), String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.apply(change))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookwire_amqp::lapin::ErrorKind;
    use hookwire_amqp::lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    fn closed_with(kind: AMQPErrorKind, text: &str) -> hookwire_amqp::Error {
        hookwire_amqp::Error::Amqp(
            ErrorKind::ProtocolError(AMQPError::new(kind, text.into())).into(),
        )
    }

    #[test]
    fn only_a_stream_without_its_writer_is_published_to_again() {
        // What RabbitMQ 3.10.8 answered right after declaring a stream on a fresh cluster.
        assert!(stream_not_ready(&closed_with(
            AMQPErrorKind::Hard(AMQPHardError::RESOURCEERROR),
            "RESOURCE_ERROR - Stream not found for queue 'ns.changes' in vhost '/'"
        )));
        assert!(stream_not_ready(&closed_with(
            AMQPErrorKind::Hard(AMQPHardError::INTERNALERROR),
            "INTERNAL_ERROR"
        )));
        // Anything else is reported as before.
        assert!(!stream_not_ready(&closed_with(
            AMQPErrorKind::Hard(AMQPHardError::RESOURCEERROR),
            "RESOURCE_ERROR - queue 'ns.changes' in vhost '/' is full"
        )));
        assert!(!stream_not_ready(&closed_with(
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
            "NOT_FOUND - no queue 'ns.changes' in vhost '/'"
        )));
        assert!(!stream_not_ready(&hookwire_amqp::Error::ConfirmTimeout(
            Duration::from_secs(1)
        )));
    }
}
