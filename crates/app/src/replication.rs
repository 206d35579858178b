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
}

impl StreamSettings {
    fn stream(&self) -> String {
        self.topology.names.changes_stream()
    }

    fn brokers(&self) -> Brokers {
        Brokers::new(self.urls.clone())
    }
}

impl Which {
    fn name(self, settings: &StreamSettings) -> String {
        match self {
            Self::Changes => settings.stream(),
            Self::Payloads(_) => settings.topology.names.payloads_stream(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Changes => "changes",
            Self::Payloads(_) => "payloads",
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
        }
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
            let publisher = self.publisher().await?;
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            let published = publisher
                .publish("", &self.which.name(&self.settings), &entry, properties)
                .await;
            if let Err(e) = published {
                // The next append opens a new connection, on the next node: the write
                // is reported failed, never assumed.
                *self.open.lock().await = None;
                self.brokers.rotate();
                return Err(e.to_string());
            }
            Ok(())
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

/// A shared handle for the changes stream's publisher (or, with `Which::Payloads`, the
/// payloads stream's).
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
    let mut consumer = stream::consume_from(&channel, &which.name(settings), from, PREFETCH)
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
            hookwire_consumer::payloads::apply(
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
