//! A real three-node RabbitMQ cluster on this machine, for the high-availability tests:
//! `tests/cluster/rabbitmq-cluster` starts nodes `hwc1@localhost` … `hwc3@localhost` on
//! 127.0.0.1 (AMQP ports base+1 … base+3), each with its own data, log and config
//! directory and the cluster's own Erlang cookie under a temporary directory, and joins
//! them. The system broker on 5672 is never addressed. Dropped, the cluster is stopped
//! and its directory removed, whether the test passed or not.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The script that runs the nodes.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster/rabbitmq-cluster")
}

/// A running three-node cluster.
#[derive(Debug)]
pub struct RabbitCluster {
    dir: PathBuf,
    base: u16,
}

impl RabbitCluster {
    /// Starts the three nodes in parallel and joins them; AMQP ports `base + 1` …
    /// `base + 3`, distribution ports `base + 20001` … (RabbitMQ's default 5672 needs a
    /// base other than 5671).
    pub fn start(base: u16) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "hookwire-rabbit-cluster-{}-{base}",
            std::process::id()
        ));
        // Built before the nodes start, so that a failure to start tears down what did.
        let cluster = Self { dir, base };
        cluster.run(&["up"])?;
        Ok(cluster)
    }

    /// The AMQP URLs of the three nodes (guest, which the nodes accept from loopback).
    pub fn urls(&self) -> Vec<String> {
        (1..=3)
            .map(|n| format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.base + n))
            .collect()
    }

    /// A producer on `namespace` connected to any of the three nodes (the first that
    /// answers, from a random start), as an application on a cluster connects.
    pub async fn producer(&self, namespace: &str) -> hookwire_amqp::Producer {
        hookwire_amqp::Producer::connect_any(
            hookwire_amqp::Brokers::new(self.urls()),
            namespace,
            "hookwire-ha-producer",
            hookwire_core::Catalog::builtin(),
        )
        .await
        .expect("a producer on the cluster")
    }

    /// Node `n`'s Erlang name, `hwcN@localhost`.
    pub fn node_name(n: u16) -> String {
        format!("hwc{n}@localhost")
    }

    /// Stops node `n` (1 … 3).
    pub fn stop_node(&self, n: u16) -> Result<()> {
        self.run(&["stop", &n.to_string()]).map(drop)
    }

    /// Starts node `n` again and waits until it runs.
    pub fn start_node(&self, n: u16) -> Result<()> {
        self.run(&["start", &n.to_string()]).map(drop)
    }

    /// The node (1 … 3) leading quorum queue or stream `queue`, as a node still up sees it.
    pub fn leader(&self, queue: &str) -> Result<u16> {
        let out = self.run(&["leader", queue])?;
        let name = out.trim();
        (1..=3)
            .find(|&n| Self::node_name(n) == name)
            .with_context(|| format!("no leader known for {queue}: `{name}`"))
    }

    /// `rabbitmqctl` against node `n`, its output.
    pub fn ctl(&self, n: u16, args: &[&str]) -> Result<String> {
        let n = n.to_string();
        let mut all = vec!["ctl", n.as_str()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut full: Vec<&str> = vec![args[0], &dir];
        full.extend_from_slice(&args[1..]);
        let out = Command::new(script())
            .args(&full)
            .env("HWC_PORT_BASE", self.base.to_string())
            .output()
            .with_context(|| format!("running {}", script().display()))?;
        if !out.status.success() {
            bail!(
                "rabbitmq-cluster {} failed ({}): {}{}",
                full.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        if let Err(e) = self.run(&["down"]) {
            eprintln!("tearing the RabbitMQ cluster down: {e:#}");
        }
    }
}
