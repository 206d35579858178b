//! Replaying dead letters: a failed delivery goes back to the work queue with a fresh
//! retry budget; an event that never fanned out goes back to the events exchange.

use std::time::Duration;

use hookwire_amqp::topology::DELIVER_KEY;
use hookwire_amqp::{Names, Publisher, connect, headers};
use hookwire_core::event::ORG_HEADER;
use hookwire_core::now_ms;
use hookwire_store::DeadLetter;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use tokio::sync::Mutex;

use crate::task::Task;
use crate::{Error, Result};

/// Publishes replays over its own connection, opened on first use and again after a failure.
#[derive(Debug)]
pub struct Replayer {
    url: String,
    connection_name: String,
    confirm_timeout: Duration,
    names: Names,
    session: Mutex<Option<(Connection, Publisher)>>,
}

impl Replayer {
    /// A replayer into `namespace`; it connects when first used.
    pub fn new(
        url: &str,
        connection_name: &str,
        namespace: &str,
        confirm_timeout: Duration,
    ) -> Self {
        Self {
            url: url.to_owned(),
            connection_name: format!("{connection_name}-replay"),
            confirm_timeout,
            names: Names::new(namespace),
            session: Mutex::new(None),
        }
    }

    /// Publishes one dead letter back, confirmed. The caller removes it from the archive.
    pub async fn replay(&self, dead: &DeadLetter) -> Result<()> {
        let (exchange, routing_key, properties) = self.destination(dead)?;
        let mut session = self.session.lock().await;
        if session
            .as_ref()
            .is_none_or(|(c, _)| !c.status().connected())
        {
            let connection = connect(&self.url, &self.connection_name).await?;
            let publisher = Publisher::open(&connection, self.confirm_timeout).await?;
            *session = Some((connection, publisher));
        }
        let Some((_, publisher)) = session.as_ref() else {
            return Err(Error::Internal("no replay session".into()));
        };
        let result = publisher
            .publish(&exchange, &routing_key, &dead.body, properties)
            .await;
        if result.is_err() {
            // Reconnect next time rather than reuse a channel in an unknown state.
            *session = None;
        }
        Ok(result?)
    }

    fn destination(&self, dead: &DeadLetter) -> Result<(String, String, BasicProperties)> {
        let unreplayable = |why: &str| {
            Error::Refused(format!("dead letter {} cannot be replayed: {why}", dead.id))
        };
        let event_type = dead
            .event_type
            .clone()
            .ok_or_else(|| unreplayable("its event type is unknown"))?;
        match (dead.subscription_id, &dead.org, &dead.event_id) {
            (Some(subscription_id), Some(org), Some(event_id)) => {
                let task = Task {
                    event_id: event_id.clone(),
                    org: org.clone(),
                    event_type,
                    subscription_id,
                    attempts: 0,
                    first_seen_ms: now_ms(),
                    published_at_ms: None,
                };
                Ok((
                    self.names.work_exchange(),
                    DELIVER_KEY.to_owned(),
                    task.properties(),
                ))
            }
            (Some(_), _, _) => Err(unreplayable("its organization or event id is missing")),
            (None, org, event_id) => {
                let mut h = FieldTable::default();
                if let Some(org) = org {
                    headers::set_text(&mut h, ORG_HEADER, org);
                }
                let mut properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_headers(h);
                if let Some(id) = event_id {
                    properties = properties.with_message_id(id.as_str().into());
                }
                Ok((self.names.events_exchange(), event_type, properties))
            }
        }
    }
}
