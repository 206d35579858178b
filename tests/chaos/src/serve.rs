//! `hookwire serve` as a child process: its loopback-only config, its seeded store, its
//! namespace, SIGKILL and restart, and its admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hookwire_amqp::Topology;
use hookwire_core::{Config, Subscription};
use hookwire_store::{Change, Store};
use hookwire_testkit::harness::API_TOKEN;
use serde_json::Value;

use crate::Ctx;
use crate::broker::Inspector;

/// The knobs a scenario sets; every other key is the test config's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `delivery.retry_schedule`, in seconds.
    pub schedule: Vec<u64>,
    /// `delivery.per_endpoint_concurrency`.
    pub per_endpoint_concurrency: usize,
    /// `delivery.concurrency`.
    pub concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            schedule: vec![1, 2, 4],
            per_endpoint_concurrency: 32,
            concurrency: 64,
        }
    }
}

impl Settings {
    /// The whole schedule with the largest jitter (× 1.25): the longest a delivery can
    /// keep retrying.
    pub fn total(&self) -> Duration {
        Duration::from_secs(self.schedule.iter().sum()).mul_f64(1.25)
    }
}

/// One `serve` with its store and namespace; the child is killed on drop.
#[derive(Debug)]
pub struct Daemon {
    /// The parsed config (the same keys as the file).
    pub config: Config,
    config_path: PathBuf,
    log_path: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
    api: Option<SocketAddr>,
    http: reqwest::Client,
    inspector: Inspector,
    /// Times `serve` was started.
    pub starts: u32,
    /// Times it was SIGKILLed.
    pub kills: u32,
    /// The running child's pid, 0 while none runs: for a sampler in another task.
    pid: Arc<AtomicU32>,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Daemon {
    /// Writes the config, seeds the store with `subs`, declares the namespace (deleted by
    /// `main` at the end, even on failure). Does not start `serve`.
    pub async fn create(ctx: &Ctx, settings: &Settings, subs: &[Subscription]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("hwchaos-").tempdir()?;
        let namespace = format!(
            "hwchaos-{}",
            &uuid::Uuid::now_v7().simple().to_string()[16..]
        );
        let mut config = hookwire_testkit::test_config(&namespace, &dir.path().join("store"));
        config.amqp.url = ctx.amqp_url.clone();
        let d = &mut config.delivery;
        d.retry_schedule = settings
            .schedule
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect();
        d.timeout_secs = 10;
        d.per_endpoint_concurrency = settings.per_endpoint_concurrency;
        d.concurrency = settings.concurrency;
        // Failures are the point here: the circuit would defer them without using attempts.
        d.circuit_failure_threshold = 1_000_000;
        config.log.level = "info".into();
        {
            // sled locks its directory: seed it, then close it before serve opens it.
            let store = Store::open(&config.store.path, 8 << 20, &config.secrets_key()?)
                .context("seed the store")?;
            for sub in subs {
                store.apply(Change::Upsert(sub.clone()))?;
            }
            store.flush()?;
        }
        let config_path = dir.path().join("hookwire.toml");
        std::fs::write(&config_path, config.to_toml())?;
        let topology = Topology::of_config(&config)?;
        let mut connection = None;
        for _ in 0..60 {
            match hookwire_amqp::connect(&ctx.amqp_url, "hookwire-chaos-setup").await {
                Ok(c) => {
                    connection = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        let connection =
            connection.with_context(|| format!("RabbitMQ is not answering at {}", ctx.amqp_url))?;
        let channel = connection.create_channel().await?;
        ctx.register(&config);
        topology.declare(&channel).await?;
        let _ = connection.close(200, "declared".into()).await;
        Ok(Self {
            config,
            config_path,
            log_path: dir.path().join("serve.log"),
            binary: ctx.binary.clone(),
            child: None,
            api: None,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()?,
            inspector: Inspector::new(&ctx.amqp_url),
            starts: 0,
            kills: 0,
            pid: Arc::default(),
            _dir: dir,
        })
    }

    fn events_queue(&self) -> String {
        format!("{}.events", self.config.amqp.namespace)
    }

    /// The organization-less path of the namespace's connection name, for closing it.
    pub fn connection_name(&self) -> &str {
        &self.config.amqp.connection_name
    }

    /// Starts `serve` and waits until its API listens and it consumes the events queue.
    pub async fn start(&mut self) -> Result<()> {
        anyhow::ensure!(self.child.is_none(), "serve is already running");
        // serve refuses to start while its events queue still has a consumer (the
        // killed one, until the broker notices).
        let queue = self.events_queue();
        self.inspector
            .wait_consumers(&queue, 0, Duration::from_secs(60))
            .await?;
        let offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(&self.binary)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.pid.store(child.id(), Ordering::SeqCst);
        self.child = Some(child);
        self.starts += 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        self.api = None;
        while self.api.is_none() {
            self.check_alive()?;
            let text = std::fs::read(&self.log_path).unwrap_or_default();
            let fresh =
                String::from_utf8_lossy(&text[(offset as usize).min(text.len())..]).into_owned();
            self.api = fresh
                .lines()
                .find(|l| l.contains("hookwire starting."))
                .and_then(api_addr);
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "serve did not log its API address; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            self.check_alive()?;
            if matches!(self.inspector.consumers(&queue).await, Ok(n) if n > 0) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "serve did not consume within 60 s; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, reaped.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            self.pid.store(0, Ordering::SeqCst);
            child.kill().context("SIGKILL serve")?;
            child.wait()?;
            self.kills += 1;
        }
        Ok(())
    }

    /// SIGTERM (graceful); fails unless serve exits 0 within 30 s.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.pid.store(0, Ordering::SeqCst);
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "serve exited with {status} on SIGTERM; log:\n{}",
                        self.log_tail()
                    );
                }
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("serve did not stop within 30 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The running child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The running child's pid as it changes with kills and restarts (0 while none runs).
    pub fn pid_watch(&self) -> Arc<AtomicU32> {
        self.pid.clone()
    }

    /// Fails with the log's tail if serve has exited on its own.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            self.pid.store(0, Ordering::SeqCst);
            bail!("serve exited ({status}); log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// Copies serve's log out of the temporary directory, for a failed run.
    pub fn keep_log(&self) -> Result<PathBuf> {
        let path = std::env::temp_dir().join(format!("{}-serve.log", self.config.amqp.namespace));
        std::fs::copy(&self.log_path, &path)?;
        Ok(path)
    }

    /// The last 20 lines of serve's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Opens the store; only while serve is stopped (sled locks the directory).
    pub fn open_store(&self) -> Result<Store> {
        anyhow::ensure!(self.child.is_none(), "serve holds the store");
        Store::open(
            &self.config.store.path,
            8 << 20,
            &self.config.secrets_key()?,
        )
        .context("the store does not open")
    }

    /// A cloneable client of the running serve's API.
    pub fn client(&self) -> Result<ApiClient> {
        Ok(ApiClient {
            http: self.http.clone(),
            addr: self.api.context("serve is not running")?,
        })
    }

    /// A request to the admin API: its status and JSON body (`Null` when empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        self.client()?.request(method, path, body).await
    }

    /// Dead letters of `org` and those without an org, through the API.
    pub async fn dead_letters(&self, org: &str) -> Result<Vec<crate::ledger::Dead>> {
        let mut out = Vec::new();
        for list in [
            format!("/v1/orgs/{org}/dead-letters?limit=500"),
            "/v1/admin/dead-letters?limit=500".into(),
        ] {
            let mut path = list.clone();
            loop {
                let (status, body) = self.api(reqwest::Method::GET, &path, None).await?;
                anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
                for d in body["dead_letters"].as_array().into_iter().flatten() {
                    out.push(crate::ledger::Dead {
                        reason: d["reason"].as_str().unwrap_or("").to_owned(),
                        event_id: d["event_id"].as_str().map(str::to_owned),
                        subscription: d["webhook_id"].as_str().and_then(|s| s.parse().ok()),
                    });
                }
                match body["next_cursor"].as_str() {
                    Some(cursor) => path = format!("{list}&cursor={cursor}"),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

/// The admin API of one running serve.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    addr: SocketAddr,
}

impl ApiClient {
    /// A request: its status and JSON body (`Null` when empty or not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("http://{}{path}", self.addr))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body)?);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }
}

/// The API address from serve's start line (`… api=127.0.0.1:PORT …`).
fn api_addr(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .and_then(|a| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_address_is_read_from_the_start_line() {
        let line = "2026-11-27T08:00:00Z  INFO hookwire::serve: hookwire starting. version=\"0.1.0\" namespace=hwchaos-1 broker=amqp://guest:***@127.0.0.1:5672/%2f store=/tmp/s api=127.0.0.1:40123";
        assert_eq!(
            api_addr(line),
            Some("127.0.0.1:40123".parse().expect("addr"))
        );
    }

    #[test]
    fn the_schedule_total_includes_the_jitter() {
        let s = Settings::default();
        assert_eq!(s.total(), Duration::from_millis(8750));
    }
}
