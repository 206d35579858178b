//! Publishing events by the wire contract, for Rust applications and `hookwire publish`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hookwire_core::Catalog;
use hookwire_core::trace::TraceParent;
use lapin::{BasicProperties, Connection};
use tracing::warn;

use crate::wire::{self, OutgoingEvent};
use crate::{Brokers, Error, Names, Publisher, Result};

/// How often a publish that failed for want of a broker is tried again, each time on a
/// fresh connection to the next node that answers.
const PUBLISH_ATTEMPTS: u32 = 3;

/// How long a publish of [`Producer::connect_any`] waits for its confirm.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes events to a namespace's events exchange.
#[derive(Debug)]
pub struct Producer {
    link: Link,
    names: Names,
    catalog: Catalog,
}

#[derive(Debug)]
enum Link {
    /// A confirm channel the caller owns.
    Channel(Publisher),
    /// Connections of the producer's own, to any of the brokers.
    Brokers(Box<Failover>),
}

/// A connection to one of the brokers, opened again (on the next node that answers)
/// after a publish failed on it.
#[derive(Debug)]
struct Failover {
    brokers: Brokers,
    connection_name: String,
    confirm_timeout: Duration,
    session: tokio::sync::Mutex<Option<Session>>,
    /// Numbers sessions, so that concurrent publishes that failed on one session replace
    /// it once, not once each.
    generation: AtomicU64,
}

#[derive(Debug)]
struct Session {
    generation: u64,
    connection: Connection,
    publisher: Publisher,
}

impl Producer {
    /// Connects to `url` and publishes into `namespace`, checking events against `catalog`.
    pub async fn connect(
        url: &str,
        namespace: &str,
        connection_name: &str,
        catalog: Catalog,
    ) -> Result<Self> {
        Self::connect_any(Brokers::one(url), namespace, connection_name, catalog).await
    }

    /// Connects to one of `brokers` (the nodes of a cluster) and publishes into
    /// `namespace`. A publish whose connection fails, or that is nacked or not confirmed
    /// in time, is published again over a new connection to the next node that answers,
    /// up to three times in all, and only then reported: an event is never taken as
    /// stored without its confirm. A publish tried again may be stored twice.
    pub async fn connect_any(
        brokers: Brokers,
        namespace: &str,
        connection_name: &str,
        catalog: Catalog,
    ) -> Result<Self> {
        Self::connect_any_with(
            brokers,
            namespace,
            connection_name,
            catalog,
            DEFAULT_CONFIRM_TIMEOUT,
        )
        .await
    }

    /// [`Producer::connect_any`], each publish waiting at most `confirm_timeout` for its
    /// confirm (`amqp.confirm_timeout`) before it is tried again or reported.
    pub async fn connect_any_with(
        brokers: Brokers,
        namespace: &str,
        connection_name: &str,
        catalog: Catalog,
        confirm_timeout: Duration,
    ) -> Result<Self> {
        let failover = Failover {
            brokers,
            connection_name: connection_name.to_owned(),
            confirm_timeout,
            session: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        };
        // Connecting now reports an unreachable cluster to the caller at once.
        failover.publisher().await?;
        Ok(Self {
            link: Link::Brokers(Box::new(failover)),
            names: Names::new(namespace),
            catalog,
        })
    }

    /// Publishes through an existing confirm channel.
    pub fn with_publisher(publisher: Publisher, namespace: &str, catalog: Catalog) -> Self {
        Self {
            link: Link::Channel(publisher),
            names: Names::new(namespace),
            catalog,
        }
    }

    /// Builds the body and properties, refusing anything the wire contract would dead-letter.
    pub fn encode(&self, event: &OutgoingEvent) -> Result<(Vec<u8>, BasicProperties)> {
        wire::encode_event(&self.catalog, event)
    }

    /// Publishes one event and waits for the broker's confirm.
    pub async fn publish(&self, event: &OutgoingEvent) -> Result<()> {
        self.publish_in_trace(event, None).await
    }

    /// Publishes one event as a span of `trace` (its `traceparent` and `tracestate`
    /// headers), so that hookwire's spans and the webhook request join that trace.
    pub async fn publish_in_trace(
        &self,
        event: &OutgoingEvent,
        trace: Option<&TraceParent>,
    ) -> Result<()> {
        let (body, properties) = self.encode(event)?;
        let properties = match trace {
            Some(trace) => wire::with_trace(properties, trace),
            None => properties,
        };
        let exchange = self.names.events_exchange();
        match &self.link {
            Link::Channel(publisher) => {
                publisher
                    .publish(&exchange, &event.event_type, &body, properties)
                    .await
            }
            Link::Brokers(failover) => {
                failover
                    .publish(&exchange, &event.event_type, &body, properties)
                    .await
            }
        }
    }

    /// Closes the connection this producer opened, if any.
    pub async fn close(self) -> Result<()> {
        if let Link::Brokers(failover) = self.link
            && let Some(session) = failover.session.into_inner()
        {
            session.connection.close(200, "bye".into()).await?;
        }
        Ok(())
    }
}

/// Whether a failed publish may succeed on another connection: the broker or the link to
/// it failed, or did not confirm. A returned (unroutable) or refused event would fail the
/// same way again.
fn worth_another_node(error: &Error) -> bool {
    matches!(
        error,
        Error::Amqp(_) | Error::ConfirmTimeout(_) | Error::Nacked { .. }
    )
}

impl Failover {
    /// The current session's publisher, connecting first if need be.
    async fn publisher(&self) -> Result<(u64, Publisher)> {
        let mut session = self.session.lock().await;
        if let Some(s) = session.as_ref()
            && s.connection.status().connected()
        {
            return Ok((s.generation, s.publisher.clone()));
        }
        let connection = self.brokers.connect(&self.connection_name).await?;
        let publisher = Publisher::open(&connection, self.confirm_timeout).await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *session = Some(Session {
            generation,
            connection,
            publisher: publisher.clone(),
        });
        Ok((generation, publisher))
    }

    /// Drops session `generation` if it is still the current one, and moves on to the
    /// next node; a later session is left alone.
    async fn abandon(&self, generation: u64) {
        let mut session = self.session.lock().await;
        if session.as_ref().is_some_and(|s| s.generation == generation) {
            if let Some(old) = session.take() {
                // Closing a dead connection never answers; this one is given up as it is.
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        old.connection.close(320, "publish failed".into()),
                    )
                    .await;
                });
            }
            self.brokers.rotate();
        }
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        let mut attempt = 1;
        loop {
            let result = match self.publisher().await {
                Ok((generation, publisher)) => {
                    let published = publisher
                        .publish(exchange, routing_key, body, properties.clone())
                        .await;
                    if published.as_ref().is_err_and(worth_another_node) {
                        self.abandon(generation).await;
                    }
                    published
                }
                Err(e) => Err(e),
            };
            match result {
                Err(e) if worth_another_node(&e) && attempt < PUBLISH_ATTEMPTS => {
                    warn!(error = %e, attempt, "Publish not confirmed; publishing again on another connection.");
                    tokio::time::sleep(Duration::from_millis(250) * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
