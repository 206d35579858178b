//! Publishing events by the wire contract, for Rust applications and `hookwire publish`.

use std::time::Duration;

use hookwire_core::Catalog;
use hookwire_core::trace::TraceParent;
use lapin::{BasicProperties, Connection};

use crate::wire::{self, OutgoingEvent};
use crate::{Names, Publisher, Result};

/// Publishes events to a namespace's events exchange.
#[derive(Debug)]
pub struct Producer {
    publisher: Publisher,
    names: Names,
    catalog: Catalog,
    /// Kept so the connection lives as long as the producer.
    connection: Option<Connection>,
}

impl Producer {
    /// Connects to `url` and publishes into `namespace`, checking events against `catalog`.
    pub async fn connect(
        url: &str,
        namespace: &str,
        connection_name: &str,
        catalog: Catalog,
    ) -> Result<Self> {
        let connection = crate::connect(url, connection_name).await?;
        let publisher = Publisher::open(&connection, Duration::from_secs(30)).await?;
        Ok(Self {
            publisher,
            names: Names::new(namespace),
            catalog,
            connection: Some(connection),
        })
    }

    /// Publishes through an existing confirm channel.
    pub fn with_publisher(publisher: Publisher, namespace: &str, catalog: Catalog) -> Self {
        Self {
            publisher,
            names: Names::new(namespace),
            catalog,
            connection: None,
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
        self.publisher
            .publish(
                &self.names.events_exchange(),
                &event.event_type,
                &body,
                properties,
            )
            .await
    }

    /// Closes the connection this producer opened, if any.
    pub async fn close(self) -> Result<()> {
        if let Some(connection) = self.connection {
            connection.close(200, "bye".into()).await?;
        }
        Ok(())
    }
}
