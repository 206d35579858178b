//! How a node reaches the replication streams, and which stream is which.

use std::time::Duration;

use hookwire_amqp::envelope::StreamKey;
use hookwire_amqp::{Brokers, Topology};

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
    /// This node's id, in every envelope it publishes.
    pub(crate) node: String,
    /// The stream MAC key derived from `secrets.key`.
    pub(crate) key: StreamKey,
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
    pub(super) fn stream(&self) -> String {
        self.topology.names.changes_stream()
    }

    pub(super) fn brokers(&self) -> Brokers {
        Brokers::new(self.urls.clone()).with_frame_max(STREAM_FRAME_MAX)
    }
}

impl Which {
    pub(super) fn name(self, settings: &StreamSettings) -> String {
        match self {
            Self::Changes => settings.stream(),
            Self::Payloads(_) => settings.topology.names.payloads_stream(),
            Self::Attempts(_) => settings.topology.names.attempts_stream(),
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Changes => "changes",
            Self::Payloads(_) => "payloads",
            Self::Attempts(_) => "attempts",
        }
    }

    pub(super) async fn declare(
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
