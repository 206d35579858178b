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
    /// Logging.
    pub log: LogConfig,
    /// The event catalog.
    pub catalog: CatalogConfig,
}

/// `[amqp]`: all that `topology` and `publish` need.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// The broker URL, `amqp://user:pass@host:port/vhost`.
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub namespace: String,
    /// Unacked events the consumer may hold; 0 means 2 × `delivery.concurrency`.
    pub prefetch: u16,
    /// The connection name shown by the broker.
    pub connection_name: String,
    /// How long a publish may wait for its confirm.
    pub confirm_timeout_secs: u64,
    /// Longest wait between two reconnection attempts.
    pub reconnect_max_delay_secs: u64,
    /// How long opening a broker session (connection, handshake, declarations, consumers)
    /// may take before it is abandoned and tried again.
    pub open_timeout_secs: u64,
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
    pub attempt_retention_secs: u64,
    /// Each webhook keeps at most this many attempts.
    pub attempts_per_webhook: usize,
    /// Dead letters older than this are pruned.
    pub dead_letter_retention_secs: u64,
    /// Each organization keeps at most this many dead letters (and so do the letters
    /// without one).
    pub dead_letters_per_org: usize,
}

/// `[api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address of the admin API.
    pub listen: String,
    /// Bearer tokens accepted on `/v1`.
    pub tokens: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
}

/// `[delivery]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Timeout of one attempt.
    pub timeout_secs: u64,
    /// Waits between attempts.
    #[serde(with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Attempts in flight at once to one webhook.
    pub per_endpoint_concurrency: usize,
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
    pub circuit_cool_off_secs: u64,
    /// Trial attempts a half-open circuit admits; their failure rate closes or re-opens it.
    pub circuit_half_open_trials: u32,
    /// Longest a delivery is deferred by an open circuit without an attempt; past it,
    /// it gets one regardless.
    #[serde(with = "humantime_serde")]
    pub circuit_max_deferral: Duration,
    /// A webhook that has failed without a single success this long is disabled.
    pub disable_after_secs: u64,
    /// The deferral tier.
    #[serde(with = "humantime_serde")]
    pub defer_delay: Duration,
    /// Age after which a delivery is dead-lettered as `expired`.
    pub max_age_secs: u64,
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
    /// Extra CA certificates (PEM); empty for none.
    pub ca_file: PathBuf,
    /// Shutdown grace for in-flight attempts.
    pub shutdown_grace_secs: u64,
}

/// `[secrets]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Base64 of the 32-byte key that encrypts signing secrets at rest.
    pub key: String,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace_secs: u64,
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
    /// A catalog file; empty for the embedded one.
    pub path: PathBuf,
}

/// `humantime_serde` handles one duration; the schedule is a list of them.
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let list: Vec<humantime_serde::Serde<Duration>> = Vec::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(humantime_serde::Serde::into_inner)
            .collect())
    }

    pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<humantime_serde::Serde<&Duration>> =
            list.iter().map(humantime_serde::Serde::from).collect();
        list.serialize(s)
    }
}

fn invalid(key: &str, message: impl Into<String>) -> Error {
    Error::Config {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Namespaces prefix queue names, which RabbitMQ limits to 255 bytes.
fn is_valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 100
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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

    /// Checks every key `serve` depends on; errors name the key.
    pub fn validate(&self) -> Result<()> {
        self.amqp.validate()?;
        let d = &self.delivery;
        if d.timeout_secs == 0 {
            return Err(invalid("delivery.timeout_secs", "must be at least 1"));
        }
        let schedule = d.retry_schedule()?;
        if self.store.dead_letters_per_org == 0 {
            return Err(invalid("store.dead_letters_per_org", "must be at least 1"));
        }
        if d.concurrency == 0 {
            return Err(invalid("delivery.concurrency", "must be at least 1"));
        }
        if d.circuit_failure_threshold == 0 {
            return Err(invalid(
                "delivery.circuit_failure_threshold",
                "must be at least 1",
            ));
        }
        if !(d.circuit_failure_rate > 0.0 && d.circuit_failure_rate <= 1.0) {
            return Err(invalid(
                "delivery.circuit_failure_rate",
                "must be above 0 and at most 1",
            ));
        }
        if d.circuit_window < Duration::from_millis(100) {
            return Err(invalid("delivery.circuit_window", "must be at least 100ms"));
        }
        if d.circuit_half_open_trials == 0 {
            return Err(invalid(
                "delivery.circuit_half_open_trials",
                "must be at least 1",
            ));
        }
        if d.circuit_max_deferral < Duration::from_secs(1) {
            return Err(invalid(
                "delivery.circuit_max_deferral",
                "must be at least 1s",
            ));
        }
        if d.per_endpoint_concurrency == 0 {
            return Err(invalid(
                "delivery.per_endpoint_concurrency",
                "must be at least 1",
            ));
        }
        d.retry_plan_of(schedule)?;
        if d.max_event_bytes == 0 || d.max_event_bytes > 16 * 1024 * 1024 {
            return Err(invalid(
                "delivery.max_event_bytes",
                "must be from 1 byte to 16 MiB",
            ));
        }
        if d.only_allowed_cidrs && d.allowed_cidrs.is_empty() {
            return Err(invalid(
                "delivery.only_allowed_cidrs",
                "needs delivery.allowed_cidrs",
            ));
        }
        if self.api.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "api.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.api.listen
                ),
            ));
        }
        if self.api.tokens.iter().any(|t| t.len() < 8) {
            return Err(invalid(
                "api.tokens",
                "every token must have at least 8 characters",
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        self.secrets_key()?;
        Ok(())
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
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.secrets.key.trim())
            .map_err(|_| invalid("secrets.key", "is not base64"))?;
        <[u8; 32]>::try_from(bytes).map_err(|b| {
            invalid(
                "secrets.key",
                format!("must decode to 32 bytes, not {}", b.len()),
            )
        })
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

    /// The delivery policy: the retry plan, `max_age_secs` and `disable_after_secs`.
    pub fn rules(&self) -> Result<DeliveryRules> {
        Ok(DeliveryRules {
            plan: self.retry_plan()?,
            max_age: Duration::from_secs(self.max_age_secs),
            disable_after: Duration::from_secs(self.disable_after_secs),
        })
    }

    fn retry_plan_of(&self, schedule: RetrySchedule) -> Result<RetryPlan> {
        RetryPlan::try_new(schedule, self.defer_delay)
            .map_err(|_| invalid("delivery.defer_delay", "must be from 100ms to 7 days"))
    }
}

impl AmqpConfig {
    /// Checks the `[amqp]` keys, all that `topology` and `publish` need.
    pub fn validate(&self) -> Result<()> {
        if !self.url.starts_with("amqp://") && !self.url.starts_with("amqps://") {
            return Err(invalid("amqp.url", "must start with amqp:// or amqps://"));
        }
        if !is_valid_namespace(&self.namespace) {
            return Err(invalid(
                "amqp.namespace",
                "must be 1 to 100 of [A-Za-z0-9._-]",
            ));
        }
        if self.confirm_timeout_secs == 0 {
            return Err(invalid("amqp.confirm_timeout_secs", "must be at least 1"));
        }
        if self.open_timeout_secs == 0 {
            return Err(invalid("amqp.open_timeout_secs", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Config {
        let mut c = Config::defaults();
        c.secrets.key = "ZGV2LWtleS1kZXYta2V5LWRldi1rZXktZGV2LWtleSE=".into();
        c
    }

    #[test]
    fn defaults_parse_and_need_only_a_key() {
        let c = Config::defaults();
        assert!(matches!(c.validate(), Err(Error::Config { key, .. }) if key == "secrets.key"));
        dev().validate().expect("defaults plus a key are valid");
        assert_eq!(dev().prefetch(), 128);
    }

    #[test]
    fn to_toml_reads_back_as_the_same_config() {
        let mut c = dev();
        c.delivery.retry_schedule = vec![Duration::from_millis(500), Duration::from_secs(90)];
        c.delivery.defer_delay = Duration::from_millis(250);
        c.delivery.allowed_cidrs = vec!["127.0.0.0/8".parse().expect("cidr")];
        c.log.format = LogFormat::Json;
        let back: Config = toml::from_str(&c.to_toml()).expect("parses");
        // Config has no PartialEq (durations and nets compare fine, but the tree is big):
        // its serialized form is compared instead.
        assert_eq!(back.to_toml(), c.to_toml());
        assert_eq!(back.delivery.retry_schedule, c.delivery.retry_schedule);
        assert_eq!(back.delivery.defer_delay, c.delivery.defer_delay);
    }

    #[test]
    fn errors_name_the_key() {
        type Mutation = fn(&mut Config);
        let cases: Vec<(&str, Mutation)> = vec![
            ("amqp.url", |c| c.amqp.url = "http://x".into()),
            ("amqp.namespace", |c| c.amqp.namespace = "a b".into()),
            ("amqp.confirm_timeout_secs", |c| {
                c.amqp.confirm_timeout_secs = 0
            }),
            ("amqp.open_timeout_secs", |c| c.amqp.open_timeout_secs = 0),
            ("delivery.timeout_secs", |c| c.delivery.timeout_secs = 0),
            ("delivery.retry_schedule", |c| {
                c.delivery.retry_schedule = vec![Duration::ZERO]
            }),
            ("delivery.concurrency", |c| c.delivery.concurrency = 0),
            ("delivery.defer_delay", |c| {
                c.delivery.defer_delay = Duration::from_millis(10)
            }),
            ("delivery.circuit_failure_rate", |c| {
                c.delivery.circuit_failure_rate = 0.0
            }),
            ("delivery.circuit_failure_rate", |c| {
                c.delivery.circuit_failure_rate = 1.5
            }),
            ("delivery.circuit_window", |c| {
                c.delivery.circuit_window = Duration::ZERO
            }),
            ("delivery.circuit_half_open_trials", |c| {
                c.delivery.circuit_half_open_trials = 0
            }),
            ("delivery.circuit_max_deferral", |c| {
                c.delivery.circuit_max_deferral = Duration::ZERO
            }),
            ("delivery.only_allowed_cidrs", |c| {
                c.delivery.only_allowed_cidrs = true
            }),
            ("store.dead_letters_per_org", |c| {
                c.store.dead_letters_per_org = 0
            }),
            ("api.listen", |c| c.api.listen = "nowhere".into()),
            ("api.tokens", |c| c.api.tokens = vec!["short".into()]),
            ("secrets.key", |c| c.secrets.key = "c2hvcnQ=".into()),
            ("secrets.key", |c| c.secrets.key = "!!".into()),
        ];
        for (key, mutate) in cases {
            let mut c = dev();
            mutate(&mut c);
            match c.validate() {
                Err(Error::Config { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{key}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_retry_plan_holds_the_schedule_and_the_deferral_tier() {
        let mut c = dev();
        c.delivery.retry_schedule = vec![Duration::from_secs(5), Duration::from_secs(60)];
        c.delivery.defer_delay = Duration::from_secs(2);
        let plan = c.retry_plan().expect("valid");
        assert_eq!(plan.schedule(), &c.retry_schedule().expect("valid"));
        assert_eq!(plan.deferral(), Duration::from_secs(2));
        let tiers: Vec<Duration> = plan.tiers().iter().copied().collect();
        assert_eq!(
            tiers,
            [2, 5, 60].map(Duration::from_secs),
            "the schedule's tiers and the deferral tier"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = DEFAULT_CONFIG_TOML.replace("[amqp]", "[amqp]\nurll = \"x\"");
        let err = toml::from_str::<Config>(&text).expect_err("unknown key");
        assert!(err.to_string().contains("urll"), "{err}");
    }
}
