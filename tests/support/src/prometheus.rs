//! Debian's `prometheus` as a child process, for the shipped alert rules: a generated
//! config that scrapes loopback targets every second as job `hookwire` and evaluates the
//! rule files as they are, on a loopback port and a data directory of its own, asked
//! through its HTTP API. Killed, and its directory removed, when dropped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::serve_child::log_tail;

/// The scrape job's name: the shipped rules select `job=~"hookwire.*"`.
pub const JOB: &str = "hookwire";
/// How long Prometheus may take to answer `/-/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A port picked free may be taken before Prometheus binds it: try again this often.
const START_ATTEMPTS: usize = 3;

/// A running Prometheus and its temporary directory (config, data, log).
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    http: reqwest::Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `binary` scraping `targets` (`/metrics`) and evaluating `rule_files`, both
    /// every second, and waits until it is ready.
    pub async fn start(
        binary: &Path,
        targets: &[SocketAddr],
        rule_files: &[PathBuf],
    ) -> Result<Self> {
        let dir = tempfile::tempdir().context("a temporary directory for prometheus")?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text(targets, rule_files))
            .with_context(|| format!("cannot write {}", config.display()))?;
        let log = dir.path().join("prometheus.log");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let addr = free_loopback_port()?;
            let mut child = spawn(binary, &config, &dir.path().join("data"), addr, &log)?;
            match wait_ready(&http, &mut child, addr).await {
                Ok(()) => {
                    return Ok(Self {
                        child,
                        addr,
                        http,
                        log,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("{e:#}"));
                }
            }
        }
        bail!(
            "prometheus did not start: {}; its log:\n{}",
            failures.join("; "),
            log_tail(&log)
        )
    }

    /// The base URL of its HTTP API, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /api/v1/<path>`: its `data`, once `status` is `success`.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url()), query)?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET /api/v1/{path}"))?;
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("the answer to /api/v1/{path}"))?;
        if body["status"] != "success" {
            bail!("/api/v1/{path} answered {body}");
        }
        Ok(body["data"].clone())
    }

    /// The instant vector `promql` evaluates to now: each series' labels and value.
    pub async fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>> {
        let data = self.api("query", &[("query", promql)]).await?;
        let Some(result) = data["result"].as_array() else {
            bail!("{promql} is not an instant vector: {data}");
        };
        result
            .iter()
            .map(|series| {
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("no value in {series}"))?;
                Ok((series["metric"].clone(), value))
            })
            .collect()
    }

    /// The alerts pending or firing now (`GET /api/v1/alerts`).
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        let data = self.api("alerts", &[]).await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// Every rule it loaded, flattened out of their groups (`GET /api/v1/rules`).
    pub async fn rules(&self) -> Result<Vec<Value>> {
        let data = self.api("rules", &[]).await?;
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("prometheus's log ends:\n{}", self.log_tail());
        }
    }
}

/// A prometheus.yml: one job, every target scraped and every rule evaluated each second.
fn config_text(targets: &[SocketAddr], rule_files: &[PathBuf]) -> String {
    let mut text = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    text.push_str("rule_files:\n");
    for file in rule_files {
        let _ = writeln!(text, "  - {:?}", file.display().to_string());
    }
    let _ = writeln!(
        text,
        "scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets:"
    );
    for target in targets {
        let _ = writeln!(text, "          - \"{target}\"");
    }
    text
}

fn spawn(binary: &Path, config: &Path, data: &Path, addr: SocketAddr, log: &Path) -> Result<Child> {
    let log =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// Waits until `/-/ready` answers 200; fails early if the child exits.
async fn wait_ready(http: &reqwest::Client, child: &mut Child, addr: SocketAddr) -> Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("prometheus on {addr} exited ({status})");
        }
        let ready = http.get(format!("http://{addr}/-/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("prometheus on {addr} was not ready within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback port free now (Prometheus cannot be told to pick one and say which).
fn free_loopback_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    Ok(listener.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_scrapes_every_target_and_loads_every_rule_file() {
        let text = config_text(
            &[
                "127.0.0.1:1".parse().expect("addr"),
                "127.0.0.1:2".parse().expect("addr"),
            ],
            &[PathBuf::from("/r/a.yml"), PathBuf::from("/r/b.yml")],
        );
        assert_eq!(
            text,
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - \"/r/a.yml\"\n  - \"/r/b.yml\"\n\
             scrape_configs:\n  - job_name: hookwire\n    static_configs:\n      - targets:\n\
             \x20         - \"127.0.0.1:1\"\n          - \"127.0.0.1:2\"\n"
        );
    }
}
