//! Replaying dead letters: publishing them back, each confirmed, over a connection of
//! the replayer's own.

use std::time::Duration;

use lapin::Connection;
use tokio::sync::Mutex;

use crate::wire::Replay;
use crate::{Names, Publisher, Result, connect};

/// Publishes replays over its own connection, opened on first use and again after a failure.
pub struct Replayer {
    url: String,
    connection_name: String,
    confirm_timeout: Duration,
    names: Names,
    session: Mutex<Option<(Connection, Publisher)>>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("url", &hookwire_core::config::redact_url(&self.url))
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
        Self {
            url: url.to_owned(),
            connection_name: format!("{connection_name}-replay"),
            confirm_timeout,
            names: Names::new(namespace),
            session: Mutex::new(None),
        }
    }

    /// Publishes one dead letter back, confirmed. The caller removes it from the archive.
    pub async fn replay(&self, dead: &Replay<'_>) -> Result<()> {
        let destination = dead.destination(&self.names)?;
        let mut session = self.session.lock().await;
        let publisher = match session.as_ref() {
            Some((connection, publisher)) if connection.status().connected() => publisher,
            _ => {
                let connection = connect(&self.url, &self.connection_name).await?;
                let publisher = Publisher::open(&connection, self.confirm_timeout).await?;
                &session.insert((connection, publisher)).1
            }
        };
        let result = publisher
            .publish(
                &destination.exchange,
                &destination.routing_key,
                dead.body,
                destination.properties,
            )
            .await;
        if result.is_err() {
            // Reconnect next time rather than reuse a channel in an unknown state.
            *session = None;
        }
        result
    }
}
