//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hookwire_amqp::Replayer;
use hookwire_core::{Catalog, TargetPolicy};
use hookwire_http::Deliverer;
use hookwire_store::{Store, Writer};

/// The API's settings, derived from the configuration once.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Accepted bearer tokens.
    pub tokens: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace: Duration,
    /// The target policy applied at create and update.
    pub policy: TargetPolicy,
    /// Webhooks one organization may have.
    pub max_webhooks_per_org: usize,
}

/// Shared state of the handlers. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Settings.
    pub config: Arc<ApiSettings>,
    /// The store, for reads.
    pub store: Store,
    /// The group-commit writer: API writes are durable before the API answers.
    pub writer: Writer,
    /// The event catalog.
    pub catalog: Arc<Catalog>,
    /// Sends test events, signed and policed like deliveries.
    pub deliverer: Deliverer,
    /// True while the daemon consumes.
    pub broker_ready: Arc<AtomicBool>,
    /// Publishes dead letters back.
    pub replayer: Arc<Replayer>,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}
