//! Debian's `nginx` as a child process, for the shipped reverse proxy config: a main
//! config of the test's own (`daemon off`, one process, pid, logs and temporary files in
//! a temporary directory) whose `http {}` block includes the site text the test renders,
//! listening on a loopback port. Killed, and its directory removed, when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::serve_child::log_tail;

/// How long nginx may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// A port picked free may be taken before nginx binds it: try again this often.
const START_ATTEMPTS: usize = 3;

/// A running nginx and its temporary directory.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `binary` with the `http {}`-level text that `site` returns for a loopback
    /// address to listen on and the directory nginx runs in (for files such as logs), and
    /// waits until it accepts connections. The text is checked with `nginx -t` first.
    pub async fn start(
        binary: &Path,
        mut site: impl FnMut(SocketAddr, &Path) -> String,
    ) -> Result<Self> {
        let dir = tempfile::tempdir().context("a temporary directory for nginx")?;
        let main = dir.path().join("nginx.conf");
        std::fs::write(&main, main_config(dir.path()))
            .with_context(|| format!("cannot write {}", main.display()))?;
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let addr = free_loopback_port()?;
            let site_file = dir.path().join("site.conf");
            std::fs::write(&site_file, site(addr, dir.path()))
                .with_context(|| format!("cannot write {}", site_file.display()))?;
            check(binary, &main, dir.path())?;
            let mut child = spawn(binary, &main, dir.path())?;
            match wait_listening(&mut child, addr).await {
                Ok(()) => return Ok(Self { child, addr, dir }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("{e:#}"));
                }
            }
        }
        bail!(
            "nginx did not start: {}; its error log:\n{}",
            failures.join("; "),
            log_tail(&dir.path().join("error.log"))
        )
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory nginx runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of its error log.
    pub fn error_log_tail(&self) -> String {
        log_tail(&self.dir.path().join("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("nginx's error log ends:\n{}", self.error_log_tail());
        }
    }
}

/// The main config: in the foreground as one process (so that killing it leaves no
/// worker behind), every file nginx writes under `dir`, the site included in `http {}`.
fn main_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log notice;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {d}/site.conf;\n\
         }}\n"
    )
}

/// nginx's own verdict on the config (`nginx -t`), with its message when it refuses.
fn check(binary: &Path, main: &Path, dir: &Path) -> Result<()> {
    let out = command(binary, main, dir)
        .arg("-t")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !out.status.success() {
        bail!(
            "nginx -t refuses the config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn command(binary: &Path, main: &Path, dir: &Path) -> Command {
    let mut command = Command::new(binary);
    // -e: the error log before the config is read, which by default is the system's.
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(main)
        .arg("-e")
        .arg(dir.join("error.log"));
    command
}

fn spawn(binary: &Path, main: &Path, dir: &Path) -> Result<Child> {
    command(binary, main, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// Waits until `addr` accepts a connection; fails early if the child exits (e.g. the port
/// was taken meanwhile).
async fn wait_listening(child: &mut Child, addr: SocketAddr) -> Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("nginx on {addr} exited ({status})");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("nginx did not listen on {addr} within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port free now (nginx cannot be told to pick one and say which).
fn free_loopback_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    Ok(listener.local_addr()?)
}
