//! What every handler shares.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hookwire_amqp::Replayer;
use hookwire_core::{Catalog, RetrySchedule, TargetPolicy};
use hookwire_http::Deliverer;
use hookwire_store::{Store, Writer};

/// The API's settings, derived from the configuration once. `Debug` hides the tokens.
#[derive(Clone)]
pub struct ApiSettings {
    /// Operators' bearer tokens (`api.tokens`), replaced when `serve` reloads them.
    pub tokens: OperatorTokens,
    /// Bearer tokens limited to organizations (`api.org_tokens`).
    pub org_tokens: Vec<hookwire_core::config::OrgToken>,
    /// Sign and verify access tokens.
    pub access_keys: crate::access::AccessTokenKeys,
    /// The longest lifetime of a minted access token.
    pub access_token_max_ttl: Duration,
    /// Origins allowed to frame the console (its CSP `frame-ancestors`); none when empty.
    pub console_frame_ancestors: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace: Duration,
    /// The target policy applied at create and update.
    pub policy: TargetPolicy,
    /// `delivery.retry_schedule`: a webhook's own schedule is made of its tiers.
    pub retry_schedule: RetrySchedule,
    /// `delivery.max_age`: a webhook's own `max_age` is at most this.
    pub max_age: Duration,
    /// Webhooks one organization may have.
    pub max_webhooks_per_org: usize,
    /// A connection must send a request's head within this long.
    pub header_read_timeout: Duration,
    /// A request must be answered within this long.
    pub request_timeout: Duration,
    /// API connections open at once.
    pub max_connections: usize,
    /// `/readyz` and `/metrics` are served on the operations port (`api.ops_listen`)
    /// instead of the API port.
    pub ops_listener: bool,
    /// This node's id (`node.id`), which a store export names as its writer.
    pub node: String,
}

/// Operators' bearer tokens (`api.tokens`): read by every request, replaced whole when
/// `serve` reloads its configuration (SIGHUP). Clones share the list. `Debug` shows how
/// many there are, never their text.
#[derive(Clone, Default)]
pub struct OperatorTokens(Arc<RwLock<Arc<[String]>>>);

impl OperatorTokens {
    /// The list `tokens`.
    pub fn new(tokens: Vec<String>) -> Self {
        Self(Arc::new(RwLock::new(tokens.into())))
    }

    /// The tokens in force now.
    pub fn current(&self) -> Arc<[String]> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the list: the next request is checked against `tokens` alone.
    pub fn replace(&self, tokens: Vec<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = tokens.into();
    }
}

impl std::fmt::Debug for OperatorTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} redacted>", self.current().len())
    }
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("tokens", &self.tokens)
            .field("org_tokens", &self.org_tokens)
            .field("access_token_max_ttl", &self.access_token_max_ttl)
            .field("console_frame_ancestors", &self.console_frame_ancestors)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("rotation_grace", &self.rotation_grace)
            .field("policy", &self.policy)
            .field("retry_schedule", &self.retry_schedule)
            .field("max_age", &self.max_age)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("ops_listener", &self.ops_listener)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Webhooks' circuits as this node's delivery engine sees them: each node judges the
/// webhooks it delivers to by its own attempts.
pub trait Circuits: Send + Sync + std::fmt::Debug {
    /// Webhook `id`'s circuit; `None` if this node has not attempted it since it started.
    fn circuit(&self, id: &uuid::Uuid) -> Option<crate::webhooks::Circuit>;
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
    /// How many events this node resends per second, per webhook and per organization.
    pub resend_budget: Arc<crate::resend::ResendBudget>,
    /// Permits for test events in flight (`api.max_test_sends`): the engine's concurrency
    /// limit lives in the consumer, so the API bounds its own outbound requests.
    pub test_sends: Arc<tokio::sync::Semaphore>,
    /// One permit: the store exports running at once (`GET /v1/admin/store/export`).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// True while the daemon consumes.
    pub broker_ready: Arc<AtomicBool>,
    /// Publishes dead letters back.
    pub replayer: Arc<Replayer>,
    /// Webhooks' circuits on this node; `None` where no delivery engine runs.
    pub circuits: Option<Arc<dyn Circuits>>,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}
