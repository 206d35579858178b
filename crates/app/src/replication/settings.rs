//! How a node reaches the replication streams, and which stream is which.

use std::time::Duration;

use hookwire_amqp::envelope::StreamKey;
use hookwire_amqp::lapin::Connection;
use hookwire_amqp::stream::Declared;
use hookwire_amqp::{Brokers, StreamBounds, Topology};

/// The frame size the stream connections ask for. They carry only hookwire's own entries,
/// whose headers are a few hundred bytes, so small frames are safe, and they keep lapin's
/// buffers at 1 MiB a connection instead of 8 (a node opens six of them).
const STREAM_FRAME_MAX: u32 = 16 * 1024;

/// How a node reaches its changes stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    /// The broker URLs; the reader and the writer each rotate over them on their own.
    pub(crate) urls: Vec<String>,
    /// `amqp.tls_*`, for `amqps://` URLs.
    pub(crate) tls: Option<hookwire_amqp::BrokerTls>,
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
    /// Kept event bodies: their retention and byte budget bound the stream.
    Payloads(StreamBounds),
    /// Attempt records: the attempt log's retention and `replication.attempts_max_bytes`
    /// bound the stream.
    Attempts(StreamBounds),
}

impl StreamSettings {
    pub(super) fn stream(&self) -> String {
        self.topology.names.changes_stream()
    }

    pub(super) fn brokers(&self) -> Brokers {
        Brokers::new(self.urls.clone())
            .with_frame_max(STREAM_FRAME_MAX)
            .with_tls(self.tls.clone())
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

    /// Declares this stream. A stream that exists with other arguments (bounds changed in
    /// the configuration since it was made) is used as it is, with a warning that names
    /// every argument that differs, with both values, and
    /// `hookwire_stream_arguments_differ{stream}` at 1.
    pub(super) async fn declare(
        self,
        settings: &StreamSettings,
        connection: &Connection,
    ) -> hookwire_amqp::Result<()> {
        let topology = &settings.topology;
        let declared = match self {
            Self::Changes => match topology.declare_changes(connection).await? {
                Some(declared) => declared,
                None => return Ok(()),
            },
            Self::Payloads(bounds) => topology.declare_payloads(connection, bounds).await?,
            Self::Attempts(bounds) => topology.declare_attempts(connection, bounds).await?,
        };
        let differs = match &declared {
            Declared::AsAsked => false,
            Declared::AsFound(differences) => {
                let differences: Vec<String> =
                    differences.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    stream = %self.name(settings),
                    differences = %differences.join("; "),
                    "The stream exists with other arguments than the configuration gives; \
                     using it as it is (docs/operations.md, \"Changing a stream's bounds\")."
                );
                true
            }
        };
        metrics::gauge!("hookwire_stream_arguments_differ", "stream" => self.label())
            .set(f64::from(u8::from(differs)));
        Ok(())
    }
}
