//! `hookwire serve` as a child process: its seeded store, its log, readiness asked of the
//! child itself (so several children may serve one namespace), SIGTERM and SIGKILL, and
//! no child outliving its owner.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hookwire_core::{Config, Subscription};
use hookwire_store::{Change, Store};

/// How many of the log's last lines a failure message quotes.
const TAIL_LINES: usize = 20;
/// How often the waits look again.
const POLL: Duration = Duration::from_millis(50);

/// Writes `subscriptions` into the store at `config.store.path` and closes it again: sled
/// locks its directory, so this must finish before serve opens it.
pub fn seed_store(config: &Config, subscriptions: &[Subscription]) -> Result<()> {
    let store = Store::open(&config.store.path, 8 << 20, &config.secrets_key()?)
        .context("cannot open the store to seed it")?;
    for sub in subscriptions {
        store.apply(Change::Upsert(sub.clone()))?;
    }
    store.flush()?;
    Ok(())
}

/// The last lines of the log at `path` (empty if there is none).
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// A `hookwire serve` child, SIGKILLed and reaped when dropped while it still runs.
#[derive(Debug)]
pub struct ServeChild {
    child: Child,
    log: PathBuf,
    /// Where this child's lines begin in a log that earlier children appended to.
    log_start: u64,
    api: Option<SocketAddr>,
}

impl ServeChild {
    /// Starts `binary serve --config config` with its stderr appended to `log`. The
    /// config's `log.level` applies unless `env` sets `RUST_LOG`: the runner's own
    /// `RUST_LOG` is not passed on.
    pub fn spawn(binary: &Path, config: &Path, log: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let log_start = std::fs::metadata(log).map_or(0, |m| m.len());
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open serve's log {}", log.display()))?;
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            child,
            log: log.to_owned(),
            log_start,
            api: None,
        })
    }

    /// Waits until serve consumes, and returns its API address: its start line names the
    /// API, whose `/readyz` answers 200 once a broker session consumes and the store
    /// answers. Asked of this child, not of the queue's consumer count, so that it holds
    /// however many serve the namespace. Fails early, with the log's tail, if serve exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<SocketAddr> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if self.api.is_none() {
                self.api = self.logged_api();
            }
            if let Some(api) = self.api
                && is_ready(&http, api).await
            {
                return Ok(api);
            }
            if tokio::time::Instant::now() > deadline {
                let api = self
                    .api
                    .map_or("no API address logged".to_owned(), |a| format!("API {a}"));
                bail!(
                    "serve was not consuming within {timeout:?} ({api}); log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until serve has logged its start line, and returns its API address: for a
    /// serve that is not to become ready (its broker is not there). Fails early, with the
    /// log's tail, if serve exits.
    pub async fn wait_started(&mut self, timeout: Duration) -> Result<SocketAddr> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Some(api) = self.logged_api() {
                self.api = Some(api);
                return Ok(api);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "serve logged no start line within {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The admin API's address, once [`Self::wait_ready`] has read it from the log.
    pub fn api(&self) -> Option<SocketAddr> {
        self.api
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file serve logs to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// What this child has logged so far (not the earlier children's lines).
    pub fn own_log(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(self.log_start)
            .unwrap_or(usize::MAX)
            .min(text.len());
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// Sends SIGHUP, on which serve reloads `api.tokens`.
    pub fn hang_up(&mut self) -> Result<()> {
        self.check_alive()?;
        send_signal(self.child.id(), libc::SIGHUP).context("SIGHUP serve")
    }

    /// The last lines of serve's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Fails, with the log's tail, if serve has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("serve exited ({status}); log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// SIGTERM (a graceful stop), then the exit status. SIGKILLed, and an error, if it has
    /// not exited within `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        // Once reaped, the pid may name another process by now.
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        send_sigterm(self.child.id())?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "serve did not stop within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL, then the exit status once reaped.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.child.kill().context("SIGKILL serve")?;
        self.child.wait().context("reap serve")
    }

    /// The API address in this child's start line, if it is logged yet.
    fn logged_api(&self) -> Option<SocketAddr> {
        let text = std::fs::read(&self.log).ok()?;
        let start = usize::try_from(self.log_start)
            .unwrap_or(usize::MAX)
            .min(text.len());
        String::from_utf8_lossy(&text[start..])
            .lines()
            .find_map(api_addr)
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // serve logs to a file, not to the test's output: show the end of it with the panic.
        if std::thread::panicking() {
            eprintln!("serve's log ends:\n{}", self.log_tail());
        }
    }
}

/// SIGTERM to `pid`; std's `Child::kill` only sends SIGKILL.
fn send_sigterm(pid: u32) -> Result<()> {
    send_signal(pid, libc::SIGTERM).context("SIGTERM serve")
}

/// `signal` to `pid`.
#[allow(unsafe_code)]
fn send_signal(pid: u32, signal: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) takes two integers and touches no memory of this process; `pid` is
    // a child not yet reaped, so it still names that child.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().into())
    }
}

/// Whether the API at `api` reports ready.
async fn is_ready(http: &reqwest::Client, api: SocketAddr) -> bool {
    http.get(format!("http://{api}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

/// The API address in serve's start line: `api=ADDR` in a text log, `fields.api` in a
/// JSON one.
fn api_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("hookwire starting.") {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(json) => json["fields"]["api"].as_str()?.parse().ok(),
        Err(_) => line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("api="))
            .and_then(|a| a.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_address_is_read_from_a_text_start_line() {
        let line = "2026-11-27T08:00:00Z  INFO hookwire::serve: hookwire starting. version=\"0.1.0\" namespace=hwchaos-1 broker=amqp://guest:***@127.0.0.1:5672/%2f store=/tmp/s api=127.0.0.1:40123";
        assert_eq!(
            api_addr(line),
            Some("127.0.0.1:40123".parse().expect("addr"))
        );
    }

    #[test]
    fn the_api_address_is_read_from_a_json_start_line() {
        let line = r#"{"timestamp":"2026-11-27T08:00:00Z","level":"INFO","fields":{"message":"hookwire starting.","version":"0.1.0","api":"127.0.0.1:40123"},"target":"hookwire::serve"}"#;
        assert_eq!(
            api_addr(line),
            Some("127.0.0.1:40123".parse().expect("addr"))
        );
    }

    #[test]
    fn other_lines_name_no_api() {
        assert_eq!(api_addr("INFO hookwire: Consuming. api=127.0.0.1:1"), None);
    }
}
