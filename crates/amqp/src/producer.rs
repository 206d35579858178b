//! Publishing events by the wire contract, for Rust applications and `hookwire publish`.

use std::time::Duration;

use hookwire_core::event::{self, ORG_HEADER, OrgHeader, PUBLISHED_AT_HEADER, RawEvent};
use hookwire_core::{Catalog, now_ms};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use serde_json::{Map, Value};

use crate::{Error, Names, Publisher, Result, headers};

/// Persistent, so a broker restart keeps it (AMQP 0-9-1 `delivery-mode`).
const PERSISTENT: u8 = 2;
/// The default body limit of the wire contract.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// An event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    /// The organization that owns it.
    pub org: String,
    /// Its type, e.g. `report_run_completed`.
    pub event_type: String,
    /// Its unique id. Keep it when publishing the same event again, so receivers can
    /// drop the duplicate; two different events never share one.
    pub id: String,
    /// The catalog fields, e.g. `{"report_run_url": "https://…"}`; `event` is added.
    pub data: Map<String, Value>,
}

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
        let Some(event_type) = self.catalog.get(&event.event_type) else {
            return Err(Error::Contract(format!(
                "unknown event type `{}`; known: {}",
                event.event_type,
                self.catalog.names_joined()
            )));
        };
        let mut expected: Vec<&str> = event_type.fields.iter().map(String::as_str).collect();
        let mut given: Vec<&str> = event.data.keys().map(String::as_str).collect();
        expected.sort_unstable();
        given.sort_unstable();
        if expected != given {
            return Err(Error::Contract(format!(
                "`{}` carries exactly the fields [{}], not [{}]",
                event_type.name,
                expected.join(", "),
                given.join(", ")
            )));
        }
        /// `event` first, as in Mode's payloads, then the catalog fields.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            event: &'a str,
            #[serde(flatten)]
            data: &'a Map<String, Value>,
        }
        let body = serde_json::to_vec(&Body {
            event: &event.event_type,
            data: &event.data,
        })
        .map_err(|e| Error::Contract(e.to_string()))?;
        let published_at_ms = now_ms();
        let raw = RawEvent {
            routing_key: &event.event_type,
            org: OrgHeader::Text(&event.org),
            message_id: Some(&event.id),
            timestamp_secs: Some(published_at_ms / 1000),
            published_at_ms: Some(published_at_ms),
            body: &body,
        };
        // The same function the consumer runs: nothing published here can be dead-lettered
        // for breaking the contract.
        event::decode(&raw, &self.catalog, MAX_EVENT_BYTES)
            .map_err(|r| Error::Contract(r.detail))?;
        if event.id.is_empty() || event.id.len() > 255 {
            return Err(Error::Contract(
                "the event id must have 1 to 255 bytes".into(),
            ));
        }
        let mut headers = FieldTable::default();
        headers::set_text(&mut headers, ORG_HEADER, &event.org);
        headers::set_unsigned(&mut headers, PUBLISHED_AT_HEADER, published_at_ms);
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into())
            .with_message_id(event.id.as_str().into())
            .with_timestamp(published_at_ms / 1000)
            .with_headers(headers);
        Ok((body, properties))
    }

    /// Publishes one event and waits for the broker's confirm.
    pub async fn publish(&self, event: &OutgoingEvent) -> Result<()> {
        let (body, properties) = self.encode(event)?;
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
