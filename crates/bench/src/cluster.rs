//! `--cluster`: a three-node RabbitMQ cluster of the bench's own on this machine
//! (`tests/cluster/rabbitmq-cluster`, as the HA tests start theirs), so that baseline and
//! fanout1 run against it beside the single broker in the same run. Its nodes are named
//! `hwbN@localhost`, not the tests' `hwcN`, so that it can run beside another cluster on
//! other ports. The cluster is torn down when this is dropped, whatever happened.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hookwire_amqp::lapin::Connection;

use crate::procfs;

/// What every cluster directory's name starts with: how the cluster's Erlang VMs (whose
/// home it is) are told from the machine's own broker.
pub const DIR_PREFIX: &str = "hookwire-bench-rabbit-cluster-";
/// The nodes' names are this, then 1 … 3, `@localhost`.
const NODE_PREFIX: &str = "hwb";

/// The script's nodes, stopped and their directory removed when dropped.
struct RabbitCluster {
    dir: PathBuf,
    base: u16,
}

impl RabbitCluster {
    fn start(base: u16) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{base}", std::process::id()));
        // Built before the nodes start, so that a failure to start tears down what did.
        let cluster = Self { dir, base };
        if let Err(e) = cluster.run("up") {
            let log = cluster.dir.join("node1/log/stdout.log");
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            bail!(
                "{e:#}\nthe end of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(cluster)
    }

    fn urls(&self) -> Vec<String> {
        (1..=3)
            .map(|n| format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.base + n))
            .collect()
    }

    fn run(&self, command: &str) -> Result<()> {
        let script = hookwire_testkit::cluster::script();
        let out = Command::new(&script)
            .arg(command)
            .arg(&self.dir)
            .env("HWC_PORT_BASE", self.base.to_string())
            .env("HWC_NODE_PREFIX", NODE_PREFIX)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "rabbitmq-cluster {command} {} failed ({}): {}{}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        if let Err(e) = self.run("down") {
            eprintln!("warning: tearing the RabbitMQ cluster down: {e:#}");
        }
    }
}

/// A running cluster and the bench's control connection to it.
pub struct Cluster {
    /// Dropped last: stops every node and removes their directory.
    nodes: RabbitCluster,
    /// The AMQP URLs of the three nodes.
    pub urls: Vec<String>,
    /// A control connection (declarations, queue polls, cleanup).
    pub broker: Connection,
    /// The nodes' Erlang VMs, for the CPU columns.
    pub pids: [Option<u32>; 3],
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("urls", &self.urls)
            .field("pids", &self.pids)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts the three nodes on AMQP ports `base + 1` … `base + 3`, refusing if any of
    /// them already answers (another run's cluster, or the HA tests').
    pub async fn start(base: u16, connection_name: &str) -> Result<Self> {
        for port in base + 1..=base + 3 {
            if std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                bail!(
                    "127.0.0.1:{port} is taken (another cluster?): pass another --cluster-port-base"
                );
            }
        }
        eprintln!(
            "cluster: starting three RabbitMQ nodes on 127.0.0.1:{}-{}",
            base + 1,
            base + 3
        );
        let started = Instant::now();
        let nodes = tokio::task::spawn_blocking(move || RabbitCluster::start(base)).await??;
        let urls = nodes.urls();
        let broker = hookwire_amqp::connect(&urls[0], connection_name).await?;
        let marker = format!("{DIR_PREFIX}{}-{base}", std::process::id());
        let found = procfs::rabbitmq_pids_with(&marker);
        let mut pids = [None; 3];
        for (slot, pid) in pids.iter_mut().zip(found) {
            *slot = Some(pid);
        }
        eprintln!(
            "cluster: up in {:.1} s ({} node VMs found)",
            started.elapsed().as_secs_f64(),
            pids.iter().flatten().count()
        );
        Ok(Self {
            nodes,
            urls,
            broker,
            pids,
        })
    }

    /// Closes the control connection, then stops every node and removes its directory.
    pub async fn stop(self) {
        let _ = self.broker.close(200, "bye".into()).await;
        let nodes = self.nodes;
        let _ = tokio::task::spawn_blocking(move || drop(nodes)).await;
    }
}
