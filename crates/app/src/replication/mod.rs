//! The node's side of the replication streams, one concern a file:
//!
//! - [`publisher`]: [`StreamChangelog`](publisher::StreamChangelog) publishes this node's
//!   writes (its changes, its batches of attempts and of event bodies) to their stream.
//! - [`changes`]: [`read_changes`] applies every node's writes from the changes stream
//!   into this node's store, in the stream's order, resuming after the last offset applied.
//! - [`batches`]: one reader for the attempts and payloads streams, parameterised by what
//!   it applies ([`read_attempts`], [`read_payloads`]).
//! - [`catch_up`]: a node holds every change made before it started before it consumes.
//! - [`health`]: [`share_health`] publishes its webhooks' health transitions at an
//!   interval.
//!
//! Every reader and writer uses a connection of its own: a stream answers a `basic.nack`
//! with an error that closes the whole connection, so nothing here shares one with the
//! delivery channels. On a cluster each connects to any node and moves to the next after
//! a failure; every node holds the same offsets, so a reader resumes where it was on
//! whichever it reaches.

mod batches;
mod catch_up;
mod changes;
mod health;
mod publisher;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookwire_amqp::lapin::Connection;
use hookwire_amqp::{Brokers, Topology};
use hookwire_store::Changelog;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub(crate) use batches::{AttemptRetention, read_attempts, read_payloads};
pub(crate) use catch_up::catch_up;
pub(crate) use changes::read_changes;
pub(crate) use health::share_health;

/// The frame size the stream connections ask for. They carry only hookwire's own entries,
/// whose headers are a few hundred bytes, so small frames are safe, and they keep lapin's
/// buffers at 1 MiB a connection instead of 8 (a node opens six of them).
const STREAM_FRAME_MAX: u32 = 16 * 1024;

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

/// A shared handle for the changes stream's publisher (or, with `Which::Payloads` or
/// `Which::Attempts`, that stream's).
pub(crate) fn changelog(settings: StreamSettings, which: Which) -> Arc<dyn Changelog> {
    Arc::new(publisher::StreamChangelog::new(settings, which))
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
