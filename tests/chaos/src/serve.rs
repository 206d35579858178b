//! `hookwire serve` as a child process: its loopback-only config, its seeded store, its
//! namespace, SIGKILL and restart, and its admin API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use hookwire_amqp::Topology;
use hookwire_core::{Config, Subscription};
use hookwire_store::Store;
use hookwire_testkit::ServeChild;
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::serve_child::seed_store;
use serde_json::Value;

use crate::Ctx;

/// The knobs a scenario sets; every other key is the test config's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `delivery.retry_schedule`, in seconds.
    pub schedule: Vec<u64>,
    /// `delivery.per_endpoint_concurrency`.
    pub per_endpoint_concurrency: usize,
    /// `delivery.concurrency`.
    pub concurrency: usize,
    /// Whether webhooks' circuits may open (with short windows, see [`CIRCUIT`]); off,
    /// failures always use attempts, which the outage scenario counts on.
    pub circuit: bool,
    /// `store.attempts_per_webhook`, when the test config's will not do.
    pub attempts_per_webhook: Option<usize>,
}

/// The circuit where a scenario turns it on: opened by 10 failures at 80 % within 10 s,
/// open for 10 s, no delivery deferred longer than 20 s without an attempt. The longest
/// a delivery can then wait for its attempts is twice (first attempt, then a retry) the
/// deferral bound plus its tier: (20 + 4 × 1.25) × 2 = 50 s, within the settle rule's 60 s.
pub const CIRCUIT: (u32, Duration, Duration, Duration) = (
    10,
    Duration::from_secs(10),
    Duration::from_secs(10),
    Duration::from_secs(20),
);

impl Default for Settings {
    fn default() -> Self {
        Self {
            schedule: vec![1, 2, 4],
            per_endpoint_concurrency: 32,
            concurrency: 64,
            circuit: false,
            attempts_per_webhook: None,
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
    child: Option<ServeChild>,
    api: Option<SocketAddr>,
    http: reqwest::Client,
    /// Times `serve` was started.
    pub starts: u32,
    /// Times it was SIGKILLed.
    pub kills: u32,
    /// The running child's pid, 0 while none runs: for a sampler in another task.
    pid: Arc<AtomicU32>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Writes the config, seeds the store with `subs`, declares the namespace (deleted by
    /// `main` at the end, even on failure). Does not start `serve`.
    pub async fn create(ctx: &Ctx, settings: &Settings, subs: &[Subscription]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("hwchaos-").tempdir()?;
        let config = scenario_config(ctx, settings, &new_namespace(), &dir.path().join("store"));
        seed_store(&config, subs)?;
        declare(ctx, &config).await?;
        Self::new(ctx, config, dir)
    }

    /// `nodes` replicated nodes on one namespace, each with its own (empty) data
    /// directory and node id, as docs/operations.md runs them. `subs` reach them the way a
    /// single node's store is moved into the streams: seeded into a store of their own,
    /// exported, and imported into the namespace's changes stream. Does not start them.
    pub async fn cluster(
        ctx: &Ctx,
        settings: &Settings,
        subs: &[Subscription],
        nodes: usize,
    ) -> Result<Vec<Self>> {
        let namespace = new_namespace();
        let seed_dir = tempfile::Builder::new().prefix("hwchaos-seed-").tempdir()?;
        let mut seed = scenario_config(ctx, settings, &namespace, &seed_dir.path().join("store"));
        seed.replication.enabled = true;
        seed_store(&seed, subs)?;
        declare(ctx, &seed).await?;
        let seed_path = seed_dir.path().join("hookwire.toml");
        std::fs::write(&seed_path, seed.to_toml())?;
        let export = seed_dir.path().join("export.jsonl");
        for (command, file_flag) in [("export", "--out"), ("import", "--in")] {
            run_store_command(&ctx.binary, command, &seed_path, file_flag, &export).await?;
        }
        (1..=nodes)
            .map(|n| {
                let dir = tempfile::Builder::new().prefix("hwchaos-node-").tempdir()?;
                let mut config =
                    scenario_config(ctx, settings, &namespace, &dir.path().join("store"));
                config.replication.enabled = true;
                config.node.id = format!("node-{n}");
                Self::new(ctx, config, dir)
            })
            .collect()
    }

    fn new(ctx: &Ctx, config: Config, dir: tempfile::TempDir) -> Result<Self> {
        let config_path = dir.path().join("hookwire.toml");
        std::fs::write(&config_path, config.to_toml())?;
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
            starts: 0,
            kills: 0,
            pid: Arc::default(),
            _dir: dir,
        })
    }

    /// Deletes the node's data directory (a lost disk); only while serve is stopped.
    pub fn wipe_store(&self) -> Result<()> {
        anyhow::ensure!(self.child.is_none(), "serve holds the store");
        std::fs::remove_dir_all(&self.config.store.path).context("wiping the store")
    }

    /// The organization-less path of the namespace's connection name, for closing it.
    pub fn connection_name(&self) -> &str {
        &self.config.amqp.connection_name
    }

    /// Starts `serve` and waits until its API listens and it consumes the events queue.
    pub async fn start(&mut self) -> Result<()> {
        anyhow::ensure!(self.child.is_none(), "serve is already running");
        let child = self.child.insert(ServeChild::spawn(
            &self.binary,
            &self.config_path,
            &self.log_path,
            &[],
        )?);
        self.pid.store(child.pid(), Ordering::SeqCst);
        self.starts += 1;
        self.api = None;
        // A minute for the API to listen and another for the broker session.
        match child.wait_ready(Duration::from_secs(120)).await {
            Ok(api) => {
                self.api = Some(api);
                Ok(())
            }
            Err(e) => {
                // Forgets a child that exited; one that is merely slow stays.
                let _ = self.check_alive();
                Err(e)
            }
        }
    }

    /// SIGKILL, reaped.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            self.pid.store(0, Ordering::SeqCst);
            child.kill()?;
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
        let status = child.terminate(Duration::from_secs(30)).await?;
        anyhow::ensure!(
            status.success(),
            "serve exited with {status} on SIGTERM; log:\n{}",
            child.log_tail()
        );
        Ok(())
    }

    /// The running child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ServeChild::pid)
    }

    /// The running child's pid as it changes with kills and restarts (0 while none runs).
    pub fn pid_watch(&self) -> Arc<AtomicU32> {
        self.pid.clone()
    }

    /// Fails with the log's tail if serve has exited on its own.
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let alive = child.check_alive();
        if alive.is_err() {
            self.child = None;
            self.pid.store(0, Ordering::SeqCst);
        }
        alive
    }

    /// Copies serve's log out of the temporary directory, for a failed run.
    pub fn keep_log(&self) -> Result<PathBuf> {
        let path = std::env::temp_dir().join(format!("{}-serve.log", self.config.amqp.namespace));
        std::fs::copy(&self.log_path, &path)?;
        Ok(path)
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

/// A namespace of its own for a scenario (deleted by `main` at the end).
fn new_namespace() -> String {
    format!(
        "hwchaos-{}",
        &uuid::Uuid::now_v7().simple().to_string()[16..]
    )
}

/// The test config with the scenario's knobs, on `namespace`, its store at `store`.
fn scenario_config(ctx: &Ctx, settings: &Settings, namespace: &str, store: &Path) -> Config {
    let mut config = hookwire_testkit::test_config(namespace, store);
    if ctx.cluster_urls.is_empty() {
        config.amqp.url = ctx.amqp_url.clone();
    } else {
        // The same URLs, hence the same replication arguments, for every declaration.
        config.amqp.set_broker_urls(ctx.cluster_urls.clone());
    }
    let d = &mut config.delivery;
    d.retry_schedule = settings
        .schedule
        .iter()
        .map(|s| Duration::from_secs(*s))
        .collect();
    d.timeout = Duration::from_secs(10);
    d.per_endpoint_concurrency = settings.per_endpoint_concurrency;
    d.concurrency = settings.concurrency;
    if settings.circuit {
        let (threshold, window, cool_off, max_deferral) = CIRCUIT;
        d.circuit_failure_threshold = threshold;
        d.circuit_window = window;
        d.circuit_cool_off = cool_off;
        d.circuit_max_deferral = max_deferral;
    } else {
        // Failures are the point here: the circuit would defer them without using
        // attempts.
        d.circuit_failure_threshold = 1_000_000;
    }
    if let Some(n) = settings.attempts_per_webhook {
        config.store.attempts_per_webhook = n;
    }
    config.log.level = "info".into();
    config
}

/// Declares `config`'s namespace, waiting up to a minute for the broker, and registers it
/// for deletion at the end, even on failure.
async fn declare(ctx: &Ctx, config: &Config) -> Result<()> {
    let topology = Topology::of_config(config)?;
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
    ctx.register(config);
    topology.declare(&channel).await?;
    let _ = connection.close(200, "declared".into()).await;
    Ok(())
}

/// `hookwire store COMMAND --config CONFIG FILE_FLAG FILE`, which must succeed.
async fn run_store_command(
    binary: &Path,
    command: &str,
    config: &Path,
    file_flag: &str,
    file: &Path,
) -> Result<()> {
    let mut cmd = std::process::Command::new(binary);
    cmd.args(["store", command, "--config"])
        .arg(config)
        .arg(file_flag)
        .arg(file)
        .stdin(std::process::Stdio::null());
    let output = tokio::task::spawn_blocking(move || cmd.output()).await??;
    anyhow::ensure!(
        output.status.success(),
        "hookwire store {command} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The admin API of one running serve.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    addr: SocketAddr,
}

impl ApiClient {
    /// `/metrics`, as text.
    pub async fn metrics(&self) -> Result<String> {
        let resp = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .bearer_auth(API_TOKEN)
            .send()
            .await?;
        Ok(resp.text().await?)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_total_includes_the_jitter() {
        let s = Settings::default();
        assert_eq!(s.total(), Duration::from_millis(8750));
    }
}
