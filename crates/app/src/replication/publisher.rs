//! Publishing to a replication stream, over a connection of its own, opened on first use
//! and again after a failure. Every entry and batch goes out sealed in an envelope
//! (`hookwire_amqp::envelope`) under the stream key, numbered in this publisher's session
//! in the order the channel carries them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hookwire_amqp::envelope::Origin;
use hookwire_amqp::lapin::{BasicProperties, Connection};
use hookwire_amqp::{Brokers, Publisher};
use hookwire_store::Changelog;
use tracing::warn;
use uuid::Uuid;

use super::settings::{StreamSettings, Which};

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
    /// Drawn when the publisher starts: readers track each session's sequence apart.
    session: Uuid,
    /// The next envelope's sequence, held while the envelope is handed to the channel,
    /// so that sequences reach the stream in order.
    next_seq: tokio::sync::Mutex<u64>,
}

impl StreamChangelog {
    pub(crate) fn new(settings: StreamSettings, which: Which) -> Self {
        Self {
            brokers: settings.brokers(),
            settings,
            which,
            open: tokio::sync::Mutex::new(None),
            session: Uuid::now_v7(),
            next_seq: tokio::sync::Mutex::new(0),
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
        self.which
            .declare(&self.settings, &connection)
            .await
            .map_err(|e| e.to_string())?;
        let publisher = Publisher::open(&connection, self.settings.confirm_timeout)
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
                    .with_content_type("application/octet-stream".into());
                let stream = self.which.name(&self.settings);
                let sent = {
                    let mut next_seq = self.next_seq.lock().await;
                    let origin = Origin {
                        node: self.settings.node.clone(),
                        session: self.session,
                        seq: *next_seq,
                    };
                    // Each try takes a new number: a retry that lands after newer envelopes
                    // must not be taken for a copy of an old one.
                    *next_seq += 1;
                    let sealed = self.settings.key.seal(&stream, &origin, &entry);
                    publisher.send("", &stream, &sealed, properties).await
                };
                let published = match sent {
                    Ok(confirm) => confirm.await,
                    Err(e) => Err(e),
                };
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
