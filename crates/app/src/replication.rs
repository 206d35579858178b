//! The node's two sides of the changes stream: [`StreamChangelog`] publishes this node's
//! writes to it, and [`read_changes`] applies every node's writes from it into this
//! node's store, in the stream's order, resuming after the last offset applied.
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
use hookwire_store::{Changelog, Store, Writer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Entries received from the stream and not yet acked: the reader's window.
const PREFETCH: u16 = 256;

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
}

impl StreamSettings {
    fn stream(&self) -> String {
        self.topology.names.changes_stream()
    }

    fn brokers(&self) -> Brokers {
        Brokers::new(self.urls.clone())
    }
}

/// Publishes entries to the changes stream over a connection of its own, opened on first
/// use and again after a failure.
#[derive(Debug)]
pub(crate) struct StreamChangelog {
    settings: StreamSettings,
    brokers: Brokers,
    open: tokio::sync::Mutex<Option<(Connection, Publisher)>>,
}

impl StreamChangelog {
    pub(crate) fn new(settings: StreamSettings) -> Self {
        Self {
            brokers: settings.brokers(),
            settings,
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
        let name = format!("{} changes writer", self.settings.connection_name);
        let connection = self
            .brokers
            .connect(&name)
            .await
            .map_err(|e| e.to_string())?;
        let publisher = Publisher::open(&connection, self.settings.confirm_timeout)
            .await
            .map_err(|e| e.to_string())?;
        self.settings
            .topology
            .declare_changes(publisher.channel())
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
                .publish("", &self.settings.stream(), &entry, properties)
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
    const FIRST_DELAY: Duration = Duration::from_millis(100);
    let mut delay = FIRST_DELAY;
    let brokers = settings.brokers();
    loop {
        let started = std::time::Instant::now();
        match read_session(&settings, &brokers, &store, &writer, &stop).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "Reading the changes stream failed; reading again.");
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

/// One connection's reading, closed at the end whatever happened. `Ok` at `stop`.
async fn read_session(
    settings: &StreamSettings,
    brokers: &Brokers,
    store: &Store,
    writer: &Writer,
    stop: &CancellationToken,
) -> Result<(), String> {
    let name = format!("{} changes reader", settings.connection_name);
    let connection = brokers.connect(&name).await.map_err(|e| e.to_string())?;
    let result = read_entries(&connection, settings, store, writer, stop).await;
    // Entries handed over and not answered are read again by the next session.
    for _ in 0..writer.replication().map_or(0, |s| s.pending) {
        writer.entry_settled();
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        connection.close(200, "changes reader stopped".into()),
    )
    .await;
    result
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

/// A shared handle for the changes stream's publisher.
pub(crate) fn changelog(settings: StreamSettings) -> Arc<dyn Changelog> {
    Arc::new(StreamChangelog::new(settings))
}
