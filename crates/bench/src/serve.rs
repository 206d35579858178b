//! `hookwire serve` as a child process: its config (loopback-only), its seeded store, its
//! namespace, and its cleanup.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use hookwire_amqp::Topology;
use hookwire_amqp::lapin::Connection;
use hookwire_core::{Config, Secret, Subscription, now_ms};
use hookwire_testkit::ServeChild;
use hookwire_testkit::serve_child::seed_store;
use serde::Serialize;

use crate::amqp::EVENT_TYPE;

/// The knobs of one `serve`; everything else is `config/default.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct ServeSettings {
    /// `delivery.concurrency`.
    pub concurrency: usize,
    /// `amqp.prefetch`.
    pub prefetch: u16,
    /// `delivery.per_endpoint_concurrency`: at least the prefetch, so that no delivery of
    /// a single busy webhook is deferred by its cap.
    pub per_endpoint_concurrency: usize,
    /// `delivery.retry_schedule`.
    pub retry_schedule: Vec<String>,
    /// `delivery.defer_delay`.
    pub defer_delay: String,
    /// `delivery.circuit_failure_threshold`: high, so that 30 % failures never open it.
    pub circuit_failure_threshold: u32,
    /// `log.level`.
    pub log_level: String,
    /// `store.cache_capacity_bytes`.
    pub cache_capacity_bytes: u64,
    /// `tracing.otlp_endpoint`: spans exported there when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

impl ServeSettings {
    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "loopback-only (allowed_cidrs 127.0.0.0/8 + ::1/128, only_allowed_cidrs); \
             concurrency {}, prefetch {}, per_endpoint_concurrency {}, retry_schedule [{}], \
             defer_delay {}, circuit_failure_threshold {}, log.level {}, sled cache {} MiB; \
             other keys default",
            self.concurrency,
            self.prefetch,
            self.per_endpoint_concurrency,
            self.retry_schedule.join(", "),
            self.defer_delay,
            self.circuit_failure_threshold,
            self.log_level,
            self.cache_capacity_bytes >> 20,
        ) + &self
            .otlp_endpoint
            .as_ref()
            .map(|e| format!("; tracing.otlp_endpoint {e}"))
            .unwrap_or_default()
    }

    /// serve's config: the embedded defaults with these knobs, in loopback-only mode.
    fn config(
        &self,
        namespace: &str,
        amqp_url: &str,
        store: &Path,
        key_b64: &str,
    ) -> Result<Config> {
        let durations = |list: &[String]| {
            list.iter()
                .map(|d| humantime::parse_duration(d).with_context(|| format!("duration {d:?}")))
                .collect::<Result<Vec<_>>>()
        };
        let mut c = Config::defaults();
        c.amqp.url = amqp_url.to_owned();
        c.amqp.namespace = namespace.to_owned();
        c.amqp.connection_name = namespace.to_owned();
        c.amqp.prefetch = self.prefetch;
        c.amqp.reconnect_max_delay = Duration::from_secs(1);
        c.store.path = store.to_owned();
        c.store.cache_capacity_bytes = self.cache_capacity_bytes;
        c.api.listen = "127.0.0.1:0".into();
        let d = &mut c.delivery;
        d.concurrency = self.concurrency;
        d.per_endpoint_concurrency = self.per_endpoint_concurrency;
        d.retry_schedule = durations(&self.retry_schedule)?;
        d.defer_delay = durations(std::slice::from_ref(&self.defer_delay))?[0];
        d.circuit_failure_threshold = self.circuit_failure_threshold;
        d.timeout = Duration::from_secs(15);
        d.shutdown_grace = Duration::from_secs(5);
        d.allowed_cidrs = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
        d.only_allowed_cidrs = true;
        c.secrets.key = key_b64.to_owned();
        c.log.level = self.log_level.clone();
        if let Some(endpoint) = &self.otlp_endpoint {
            c.tracing.otlp_endpoint = endpoint.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

/// A subscription of `org` to the bench's event type at `url`.
pub fn subscription(org: &str, url: &str) -> Result<Subscription> {
    Ok(Subscription::new(
        org,
        url,
        "hookwire-bench",
        vec![EVENT_TYPE.into()],
        Secret::generate()?,
        now_ms(),
    ))
}

/// A running `hookwire serve`, killed on drop if it was not stopped.
#[derive(Debug)]
pub struct Serve {
    child: ServeChild,
    config: Config,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Seeds a fresh store with `subscriptions`, declares the namespace, starts `binary`
    /// and waits until it consumes.
    pub async fn start(
        binary: &Path,
        namespace: &str,
        amqp_url: &str,
        settings: &ServeSettings,
        subscriptions: &[Subscription],
        broker: &Connection,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("hwbench-").tempdir()?;
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let config = settings
            .config(namespace, amqp_url, &dir.path().join("store"), &key_b64)
            .context("the bench's serve config")?;
        seed_store(&config, subscriptions)?;
        let config_path = dir.path().join("hookwire.toml");
        std::fs::write(&config_path, config.to_toml())?;
        let channel = broker.create_channel().await?;
        Topology::of_config(&config)?.declare(&channel).await?;
        let _ = channel.close(200, "declared".into()).await;
        let mut child =
            ServeChild::spawn(binary, &config_path, &dir.path().join("serve.log"), &[])?;
        child.wait_ready(Duration::from_secs(60)).await?;
        Ok(Self {
            child,
            config,
            _dir: dir,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        &self.config.amqp.namespace
    }

    /// Fails with the log's tail if serve has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.child.check_alive()
    }

    /// Lines of serve's log at WARN or above, other than failed-delivery retries.
    pub fn unexpected_log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.child.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR") || (l.contains("WARN") && !l.contains("retry")))
            .map(str::to_owned)
            .collect()
    }

    /// Stops serve with SIGTERM (graceful), then deletes its namespace, whether or not
    /// serve stopped in time.
    pub async fn stop(mut self, broker: &Connection) -> Result<()> {
        let stopped = self.child.terminate(Duration::from_secs(30)).await;
        delete_namespace(broker, &self.config).await?;
        stopped.map(drop)
    }
}

/// Deletes every queue and exchange of the config's namespace.
async fn delete_namespace(broker: &Connection, config: &Config) -> Result<()> {
    let channel = broker.create_channel().await?;
    Topology::of_config(config)?.delete(&channel).await?;
    let _ = channel.close(200, "deleted".into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_a_valid_loopback_only_config() {
        let settings = ServeSettings {
            concurrency: 64,
            prefetch: 250,
            per_endpoint_concurrency: 256,
            retry_schedule: vec!["1s".into(), "5s".into()],
            defer_delay: "1s".into(),
            circuit_failure_threshold: 1_000_000,
            log_level: "info".into(),
            cache_capacity_bytes: 64 << 20,
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
        };
        let config = settings
            .config(
                "hwbench-x",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                Path::new("/tmp/s"),
                "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE=",
            )
            .expect("valid");
        assert!(config.delivery.only_allowed_cidrs);
        assert_eq!(config.prefetch(), 250);
        assert_eq!(config.amqp.namespace, "hwbench-x");
        assert_eq!(
            config.delivery.retry_schedule,
            [Duration::from_secs(1), Duration::from_secs(5)]
        );
        assert_eq!(
            config.tracing.traces_url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
    }
}
