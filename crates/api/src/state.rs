//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hookwire_amqp::Replayer;
use hookwire_consumer::Deliverer;
use hookwire_core::{Catalog, TargetPolicy};
use hookwire_store::{Store, Writer};

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Accepted bearer tokens.
    pub tokens: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace: Duration,
    /// The target policy applied at create and update.
    pub policy: TargetPolicy,
}

/// Shared state of the handlers. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Settings.
    pub config: Arc<ApiConfig>,
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

impl ApiState {
    /// The state `serve` runs the API with.
    pub fn from_config(
        config: &hookwire_core::Config,
        store: Store,
        writer: Writer,
        catalog: Catalog,
        broker_ready: Arc<AtomicBool>,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> hookwire_consumer::Result<Self> {
        Ok(Self {
            config: Arc::new(ApiConfig {
                tokens: config.api.tokens.clone(),
                max_body_bytes: config.api.max_body_bytes,
                rotation_grace: Duration::from_secs(config.secrets.rotation_grace_secs),
                policy: config.target_policy(),
            }),
            store,
            writer,
            catalog: Arc::new(catalog),
            deliverer: hookwire_consumer::deliverer_from_config(config)?,
            broker_ready,
            replayer: Arc::new(Replayer::new(
                &config.amqp.url,
                &config.amqp.connection_name,
                &config.amqp.namespace,
                Duration::from_secs(config.amqp.confirm_timeout_secs),
            )),
            metrics,
        })
    }
}
