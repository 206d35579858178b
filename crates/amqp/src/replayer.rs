//! Replaying dead letters and resending kept events: publishing them, each confirmed,
//! over a connection of the replayer's own.

use std::time::Duration;

use lapin::Connection;
use tokio::sync::Mutex;

use crate::topology::DELIVER_KEY;
use crate::wire::{Replay, Task};
use crate::{Brokers, Names, Publisher, Result};

/// Publishes replays over its own connection, opened on first use and again after a failure.
pub struct Replayer {
    brokers: Brokers,
    connection_name: String,
    confirm_timeout: Duration,
    names: Names,
    session: Mutex<Option<(Connection, Publisher)>>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("brokers", &self.brokers)
            .field("connection_name", &self.connection_name)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// A replayer into `namespace`; it connects when first used.
    pub fn new(
        url: &str,
        connection_name: &str,
        namespace: &str,
        confirm_timeout: Duration,
    ) -> Self {
        Self::with_brokers(
            Brokers::one(url),
            connection_name,
            namespace,
            confirm_timeout,
        )
    }

    /// A replayer into `namespace` that connects to any of `brokers`, and to the next
    /// one after a failure.
    pub fn with_brokers(
        brokers: Brokers,
        connection_name: &str,
        namespace: &str,
        confirm_timeout: Duration,
    ) -> Self {
        Self {
            brokers,
            connection_name: format!("{connection_name}-replay"),
            confirm_timeout,
            names: Names::new(namespace),
            session: Mutex::new(None),
        }
    }

    /// Publishes one dead letter back, confirmed. The caller removes it from the archive.
    pub async fn replay(&self, dead: &Replay<'_>) -> Result<()> {
        let destination = dead.destination(&self.names)?;
        self.publish(&[(
            destination.exchange.as_str(),
            destination.routing_key.as_str(),
            dead.body,
            destination.properties,
        )])
        .await
    }

    /// Publishes fresh tasks (no attempt made) to the work exchange, as a large fan-out
    /// does, all confirmed before it returns: each is one (event, webhook) delivery with
    /// the body given.
    pub async fn resend(&self, tasks: &[(Task, &[u8])]) -> Result<()> {
        let work = self.names.work_exchange();
        let messages: Vec<_> = tasks
            .iter()
            .map(|(task, body)| (work.as_str(), DELIVER_KEY, *body, task.properties()))
            .collect();
        self.publish(&messages).await
    }

    async fn publish(
        &self,
        messages: &[(&str, &str, &[u8], lapin::BasicProperties)],
    ) -> Result<()> {
        let mut session = self.session.lock().await;
        let publisher = match session.as_ref() {
            Some((connection, publisher)) if connection.status().connected() => publisher,
            _ => {
                let connection = self.brokers.connect(&self.connection_name).await?;
                let publisher = Publisher::open(&connection, self.confirm_timeout).await?;
                &session.insert((connection, publisher)).1
            }
        };
        let result = futures_util::future::try_join_all(messages.iter().map(
            |(exchange, routing_key, body, properties)| {
                publisher.publish(exchange, routing_key, body, properties.clone())
            },
        ))
        .await
        .map(drop);
        if result.is_err() {
            // Reconnect next time, to the next node, rather than reuse a channel in an
            // unknown state. The caller reports the error: a replay is never assumed.
            *session = None;
            self.brokers.rotate();
        }
        result
    }
}
