//! The configuration tree. Loading (defaults → file → environment) is the binary's job;
//! this module owns the shape, the embedded defaults and validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{Catalog, DeliveryRules, Error, Result, RetryPlan, RetrySchedule, TargetPolicy};

/// `config/default.toml`: every key with its default, embedded in the binary.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../config/default.toml");

/// Keys of earlier releases and the keys that replaced them. A configuration that still
/// sets one is refused with a message naming its successor, rather than read differently.
pub const RENAMED_KEYS: &[(&str, &str)] = &[
    ("amqp.confirm_timeout_secs", "amqp.confirm_timeout"),
    ("amqp.reconnect_max_delay_secs", "amqp.reconnect_max_delay"),
    ("amqp.open_timeout_secs", "amqp.open_timeout"),
    ("store.attempt_retention_secs", "store.attempt_retention"),
    (
        "store.dead_letter_retention_secs",
        "store.dead_letter_retention",
    ),
    ("delivery.timeout_secs", "delivery.timeout"),
    (
        "delivery.circuit_cool_off_secs",
        "delivery.circuit_cool_off",
    ),
    ("delivery.disable_after_secs", "delivery.disable_after"),
    ("delivery.max_age_secs", "delivery.max_age"),
    ("delivery.shutdown_grace_secs", "delivery.shutdown_grace"),
    ("secrets.rotation_grace_secs", "secrets.rotation_grace"),
];

/// Everything `hookwire serve` is configured by.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The broker connection and namespace.
    pub amqp: AmqpConfig,
    /// The embedded store.
    pub store: StoreConfig,
    /// The admin API.
    pub api: ApiConfig,
    /// How deliveries are made.
    pub delivery: DeliveryConfig,
    /// Encryption of signing secrets at rest.
    pub secrets: SecretsConfig,
    /// This node.
    pub node: NodeConfig,
    /// The store's replication between nodes.
    pub replication: ReplicationConfig,
    /// Logging.
    pub log: LogConfig,
    /// The event catalog.
    pub catalog: CatalogConfig,
    /// Span export over OTLP (off by default).
    #[serde(default)]
    pub tracing: TracingConfig,
}

/// `[amqp]`: all that `topology` and `publish` need. `Debug` hides the URL's password.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// The broker URL, `amqp://user:pass@host:port/vhost`; empty when `urls` is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The URLs of a cluster's nodes, instead of `url`: clients connect to any that
    /// answers and move to another when theirs goes away.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Replicas of each quorum queue and stream on a cluster; unset: as many as `urls`
    /// lists, at most 3 (none set with one URL); 0: no replication arguments at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u8>,
    /// Prefix of every exchange and queue name.
    pub namespace: String,
    /// Unacked events the consumer may hold; 0 means 2 × `delivery.concurrency`.
    pub prefetch: u16,
    /// The connection name shown by the broker.
    pub connection_name: String,
    /// How long a publish may wait for its confirm.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// Longest wait between two reconnection attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max_delay: Duration,
    /// How long opening a broker session (connection, handshake, declarations, consumers)
    /// may take before it is abandoned and tried again.
    #[serde(with = "humantime_serde")]
    pub open_timeout: Duration,
    /// A private CA's certificates (PEM): an `amqps://` broker's certificate must chain to
    /// one of them, and the platform's roots are not trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// The certificate chain (PEM) presented to an `amqps://` broker, with
    /// `tls_client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_certificate: Option<PathBuf>,
    /// The private key (PEM) of `tls_client_certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_key: Option<PathBuf>,
    /// The name an `amqps://` broker's certificate must carry, instead of the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The sled directory.
    pub path: PathBuf,
    /// sled's page cache size.
    pub cache_capacity_bytes: u64,
    /// Attempts older than this are pruned.
    #[serde(with = "humantime_serde")]
    pub attempt_retention: Duration,
    /// Each webhook keeps at most this many attempts.
    pub attempts_per_webhook: usize,
    /// Dead letters older than this are pruned.
    #[serde(with = "humantime_serde")]
    pub dead_letter_retention: Duration,
    /// Each organization keeps at most this many dead letters (and so do the letters
    /// without one).
    pub dead_letters_per_org: usize,
    /// The most of a dead letter's body the archive keeps; a longer body keeps this
    /// prefix, its size and a `truncated` flag, and cannot be replayed. At least
    /// `delivery.max_event_bytes`, so that every deliverable body is kept whole.
    pub dead_letter_body_max_bytes: usize,
    /// Each event's body is kept this long, once however many webhooks it went to, so
    /// that it can be resent ([`PAYLOAD_RETENTION_BOUNDS`]).
    #[serde(with = "humantime_serde", default = "default_payload_retention")]
    pub payload_retention: Duration,
    /// The most bytes of event bodies kept for resending, in all; past it the oldest go
    /// first. Bounds the archive's disk whatever producers send.
    #[serde(default = "default_payload_max_bytes")]
    pub payload_max_bytes: u64,
    /// The most bytes of one organization's kept bodies; past it its oldest go first, so
    /// one organization's producers cannot push out everyone else's.
    #[serde(default = "default_payload_max_bytes_per_org")]
    pub payload_max_bytes_per_org: u64,
}

/// The smallest byte budget of the payload archive: a few large bodies.
pub const MIN_PAYLOAD_BUDGET_BYTES: u64 = 1 << 20;

fn default_payload_max_bytes() -> u64 {
    4 << 30
}

fn default_payload_max_bytes_per_org() -> u64 {
    1 << 30
}

/// The shortest and the longest `store.payload_retention`: a minute, and 90 days (the
/// archive's disk grows with it, about the event rate times the retention times the
/// average body).
pub const PAYLOAD_RETENTION_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(90 * 86_400));

fn default_payload_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}

/// `[api]`. `Debug` shows how many tokens there are, never their text.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address of the admin API.
    pub listen: String,
    /// Listen address of the operations port, which serves `/healthz`, `/readyz` and
    /// `/metrics` (then no longer served on `listen`); none when unset.
    #[serde(default)]
    pub ops_listen: Option<String>,
    /// Operators' bearer tokens, accepted on every `/v1` route, each at least
    /// [`MIN_TOKEN_CHARS`] characters.
    pub tokens: Vec<String>,
    /// Bearer tokens limited to organizations: each works on its organizations' routes
    /// only, like an access token.
    #[serde(default)]
    pub org_tokens: Vec<OrgToken>,
    /// The longest lifetime an operator may give an access token minted by
    /// `POST /v1/orgs/{org}/access-tokens`.
    #[serde(with = "humantime_serde")]
    pub access_token_max_ttl: Duration,
    /// Origins (`https://app.example.com`) whose pages may embed the console in a frame;
    /// none when empty.
    #[serde(default)]
    pub console_frame_ancestors: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// A connection must send a request's complete head within this long, or is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request (body read, handling and a test event included) must be answered within
    /// this long, or gets 408 `request_timeout`. Longer than `delivery.timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// API connections open at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Test events (create, update of the URL, test) in flight at once; further ones are
    /// answered 503 `too_many_test_events` at once.
    pub max_test_sends: usize,
    /// Webhooks one organization may have; creating one more is refused (409
    /// `webhook_limit_reached`). Bounds the fan-out of one event.
    pub max_webhooks_per_org: usize,
    /// Events one webhook may be resent per second (one node's budget), with a burst of
    /// one full page: past it, `resend` answers 429 with `Retry-After`.
    pub resend_per_webhook_per_sec: u32,
    /// Events one organization's webhooks may be resent per second together (one node's
    /// budget), with a burst of four full pages.
    pub resend_per_org_per_sec: u32,
}

/// The shortest bearer token accepted in `api.tokens` and `api.org_tokens`.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The longest `delivery.max_slot_wait`: a waiting delivery keeps its message unacked,
/// and a longer wait is what the deferral tier is for.
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(10);

/// The shortest `api.access_token_max_ttl`: an access token lives at least a minute.
pub const MIN_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(60);
/// The longest `api.access_token_max_ttl`: access tokens cannot be revoked one by one,
/// so none may outlive thirty days.
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// One of `api.org_tokens`: a static bearer token limited to some organizations.
/// `Debug` hides the token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgToken {
    /// The bearer token, at least [`MIN_TOKEN_CHARS`] characters.
    pub token: String,
    /// The organizations it may see and change.
    pub orgs: Vec<String>,
    /// Only reads (`GET`) when true.
    #[serde(default)]
    pub read_only: bool,
}

/// `[delivery]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Timeout of one attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Waits between attempts.
    #[serde(with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// The most attempts in flight at once to one webhook that sets no `max_concurrency`.
    pub per_endpoint_concurrency: usize,
    /// Each webhook's concurrency limit adapts to its receiver's latency and overload
    /// answers, under its ceiling; off, the ceiling is the limit.
    pub adaptive_concurrency: bool,
    /// The longest a delivery waits in process for its webhook's next slot before it is
    /// parked in the deferral tier; a delivery expected to wait longer is parked at once.
    /// Zero: never wait.
    #[serde(with = "humantime_serde")]
    pub max_slot_wait: Duration,
    /// Above this many subscribers, deliveries are published as tasks.
    pub inline_fanout_max: usize,
    /// Failures within `circuit_window` needed, at the least, before the failure rate
    /// can open a webhook's circuit.
    pub circuit_failure_threshold: u32,
    /// Share of failed attempts within `circuit_window` (0 < r <= 1) that opens the circuit.
    pub circuit_failure_rate: f64,
    /// The sliding window over which a webhook's failure rate is judged.
    #[serde(with = "humantime_serde")]
    pub circuit_window: Duration,
    /// How long an open circuit waits before it turns half-open.
    #[serde(with = "humantime_serde")]
    pub circuit_cool_off: Duration,
    /// Trial attempts a half-open circuit admits; their failure rate closes or re-opens it.
    pub circuit_half_open_trials: u32,
    /// Longest a delivery is deferred by an open circuit without an attempt; past it,
    /// it gets one regardless.
    #[serde(with = "humantime_serde")]
    pub circuit_max_deferral: Duration,
    /// A webhook that has failed without a single success this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// The deferral tier.
    #[serde(with = "humantime_serde")]
    pub defer_delay: Duration,
    /// Age after which a delivery is dead-lettered as `expired`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Largest event body.
    pub max_event_bytes: usize,
    /// Retry 4xx other than 410.
    pub retry_client_errors: bool,
    /// Allow special-purpose ranges.
    pub allow_private_targets: bool,
    /// Ranges allowed anyway, or the only ones allowed.
    pub allowed_cidrs: Vec<IpNet>,
    /// Loopback-only mode when `allowed_cidrs` is loopback.
    pub only_allowed_cidrs: bool,
    /// Extra CA certificates (PEM), besides the platform's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Shutdown grace for in-flight attempts.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The proxy every attempt leaves through; none: straight to the target. Last, as a
    /// TOML table follows the section's plain keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
}

/// `[secrets]`. `Debug` hides the key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Base64 of the 32-byte key that encrypts signing secrets at rest.
    pub key: String,
    /// Base64 of earlier `key`s: secrets sealed under them still open, new ones are
    /// sealed under `key`, and `hookwire store reseal` moves every one to `key`.
    #[serde(default)]
    pub previous_keys: Vec<String>,
    /// How long a rotated-out secret keeps signing.
    #[serde(with = "humantime_serde")]
    pub rotation_grace: Duration,
}

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's id; empty: generated once and kept in the store directory.
    pub id: String,
}

/// `[replication]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Replicate the store through `<ns>.changes`.
    pub enabled: bool,
    /// The changes stream's `x-max-age`; `None` keeps it whole.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub changes_max_age: Option<Duration>,
    /// How often a node shares the health transitions of its webhooks (failing since,
    /// recovered): at most one entry per node per interval, none while nothing flips.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// The attempts stream's `x-max-length-bytes`: past it the broker drops its oldest
    /// segments.
    pub attempts_max_bytes: u64,
}

/// The smallest `replication.attempts_max_bytes`: RabbitMQ drops whole segments, so a
/// smaller bound drops records that lagging nodes have yet to read at every roll-over.
pub const MIN_STREAM_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Whether `id` may name a node: it goes into connection names, log lines and metric labels.
pub fn is_valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// A tracing filter directive.
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[catalog]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// A catalog file instead of the embedded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

mod durations;
mod proxy;
mod tracing;

pub use self::proxy::{MAX_PROXY_CREDENTIAL_BYTES, ProxyAddress, ProxyConfig, ProxyKind};
pub use self::tracing::TracingConfig;

fn invalid(key: &str, message: impl Into<String>) -> Error {
    Error::Config {
        key: key.to_owned(),
        message: message.into(),
    }
}

impl Config {
    /// The embedded defaults.
    pub fn defaults() -> Self {
        // A unit test parses the embedded file, so this cannot fail in a released build.
        toml::from_str(DEFAULT_CONFIG_TOML).expect("config/default.toml is valid")
    }

    /// The whole tree as a config file, which `serve --config` reads back as it is: how
    /// tests, the benchmark and the chaos runner configure the `serve` they start.
    pub fn to_toml(&self) -> String {
        // Every field is a string, number, bool, list or table: TOML takes them all.
        toml::to_string(self).expect("a Config serializes to TOML")
    }

    /// The retry schedule, validated.
    pub fn retry_schedule(&self) -> Result<RetrySchedule> {
        self.delivery.retry_schedule()
    }

    /// The retry schedule and every tier, validated.
    pub fn retry_plan(&self) -> Result<RetryPlan> {
        self.delivery.retry_plan()
    }

    /// The target policy of deliveries and of webhook creation.
    pub fn target_policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_private_targets: self.delivery.allow_private_targets,
            allowed_cidrs: self.delivery.allowed_cidrs.clone(),
            only_allowed_cidrs: self.delivery.only_allowed_cidrs,
        }
    }

    /// The decoded secrets key.
    pub fn secrets_key(&self) -> Result<[u8; 32]> {
        if self.secrets.key.is_empty() {
            return Err(invalid(
                "secrets.key",
                "is required: base64 of 32 random bytes (head -c 32 /dev/urandom | base64)",
            ));
        }
        decode_key("secrets.key", &self.secrets.key)
    }

    /// The decoded `secrets.previous_keys`.
    pub fn previous_secrets_keys(&self) -> Result<Vec<[u8; 32]>> {
        self.secrets
            .previous_keys
            .iter()
            .map(|k| decode_key("secrets.previous_keys", k))
            .collect()
    }

    /// The event catalog: the embedded one, or the file `catalog.path` names (read by the caller).
    pub fn catalog(&self, file_text: Option<&str>) -> Result<Catalog> {
        match file_text {
            None => Ok(Catalog::builtin()),
            Some(text) => {
                Catalog::from_toml(text).map_err(|e| invalid("catalog.path", e.to_string()))
            }
        }
    }

    /// The consumer's prefetch.
    pub fn prefetch(&self) -> u16 {
        match self.amqp.prefetch {
            0 => u16::try_from(self.delivery.concurrency.saturating_mul(2)).unwrap_or(u16::MAX),
            n => n,
        }
    }
}

/// A 32-byte key from its base64; errors name `key`, never the value.
fn decode_key(key: &'static str, text: &str) -> Result<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| invalid(key, "is not base64"))?;
    <[u8; 32]>::try_from(bytes)
        .map_err(|b| invalid(key, format!("must decode to 32 bytes, not {}", b.len())))
}

impl DeliveryConfig {
    /// The retry schedule, validated.
    pub fn retry_schedule(&self) -> Result<RetrySchedule> {
        RetrySchedule::try_new(self.retry_schedule.clone())
            .map_err(|e| invalid("delivery.retry_schedule", e.to_string()))
    }

    /// The retry schedule and every tier (the schedule's and `defer_delay`), validated:
    /// what the topology declares and the engine parks tasks in. Needs only this section,
    /// so tools that read no other key can have it.
    pub fn retry_plan(&self) -> Result<RetryPlan> {
        self.retry_plan_of(self.retry_schedule()?)
    }

    /// The delivery policy: the retry plan, `max_age` and `disable_after`.
    pub fn rules(&self) -> Result<DeliveryRules> {
        Ok(DeliveryRules {
            plan: self.retry_plan()?,
            max_age: self.max_age,
            disable_after: self.disable_after,
        })
    }

    fn retry_plan_of(&self, schedule: RetrySchedule) -> Result<RetryPlan> {
        RetryPlan::try_new(schedule, self.defer_delay)
            .map_err(|_| invalid("delivery.defer_delay", "must be from 100ms to 7 days"))
    }
}

mod broker_tls;
mod brokers;
mod redact;
mod validate;

pub use redact::redact_url;

#[cfg(test)]
mod tests;
