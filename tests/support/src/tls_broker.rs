//! A RabbitMQ node of the test's own that speaks AMQP over TLS only:
//! `tests/tls-broker/rabbitmq-tls` starts it on a free loopback port, with its data, logs,
//! config and Erlang cookie under a temporary directory. It presents a certificate a
//! [`TestCa`] signed and requires a client certificate signed by another (or the same)
//! one. The system broker on 5672 is never addressed. Dropped, the node is stopped and
//! its directory removed, whether the test passed or not.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::tls::TestCa;

/// The script that runs the node.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tls-broker/rabbitmq-tls")
}

/// A running TLS-only node.
#[derive(Debug)]
pub struct TlsBroker {
    dir: PathBuf,
    port: u16,
}

/// A loopback port free now, and `n` more after it free as well (the node's distribution
/// port and rabbitmqctl's range after it); the kernel picks the first.
fn free_ports(n: u16) -> Result<u16> {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if first.checked_add(n).is_some()
            && (1..=n).all(|i| TcpListener::bind(("127.0.0.1", first + i)).is_ok())
        {
            return Ok(first);
        }
    }
    bail!("no run of {} free loopback ports", n + 1)
}

impl TlsBroker {
    /// Starts the node presenting a certificate `server_ca` signed for `server_names`, and
    /// requiring a client certificate signed by `client_ca`; returns once it accepts
    /// connections.
    pub fn start(server_ca: &TestCa, server_names: &[&str], client_ca: &TestCa) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "hookwire-rabbit-tls-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Built before the node starts, so that a failure to start tears down what did.
        let node = Self {
            dir,
            port: free_ports(0)?,
        };
        let (cert, key) = server_ca.server_cert_pem(server_names);
        for (file, text) in [
            ("ca.pem", client_ca.pem()),
            ("server.pem", cert),
            ("server.key", key),
        ] {
            std::fs::write(node.dir.join(file), text)?;
        }
        let dist = free_ports(9)?;
        let name = format!("hwtls-{}-{}@localhost", std::process::id(), node.port);
        node.run(
            &["up", &node.port.to_string(), &dist.to_string()],
            &[("HWT_NODE", &name)],
        )?;
        Ok(node)
    }

    /// The node's AMQP URL, guest over TLS to 127.0.0.1 (the certificate must name
    /// `127.0.0.1`, or the client must be given the name it carries).
    pub fn url(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut full: Vec<&str> = vec![args[0], &dir];
        full.extend_from_slice(&args[1..]);
        let out = Command::new(script())
            .args(&full)
            .envs(env.iter().copied())
            .output()
            .with_context(|| format!("running {}", script().display()))?;
        if !out.status.success() {
            bail!(
                "rabbitmq-tls {} failed ({}): {}{}",
                full.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        if let Err(e) = self.run(&["down"], &[]) {
            eprintln!("tearing the TLS RabbitMQ node down: {e:#}");
        }
    }
}
