//! The shared broker: `rabbitmqctl` actions (closing hookwire's connections by name,
//! stopping and starting the app), and the guard that always puts the app back.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("cannot run rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Closes every connection of a node whose `amqp.connection_name` is `name` (each is
/// named `name@<node id>`, with what it does after); returns how many.
pub fn close_connections_named(name: &str) -> Result<usize> {
    let out = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ])?;
    let marker = format!(r#"{{"connection_name","{name}@"#);
    let pids: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&marker))
        .filter_map(|l| l.split('\t').next())
        .collect();
    for pid in &pids {
        rabbitmqctl(&["close_connection", pid, "hookwire chaos runner"])?;
    }
    Ok(pids.len())
}

/// `queue:ready/unacked` of every non-empty queue of `namespace`, for a failure report.
pub fn queue_depths(namespace: &str) -> String {
    match rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ]) {
        Ok(out) => nonempty_queues(&out, namespace),
        Err(e) => format!("{e:#}"),
    }
}

/// `queue:ready/unacked` of every non-empty queue of `namespace` in a `list_queues name
/// messages_ready messages_unacknowledged` listing.
pub fn nonempty_queues(listing: &str, namespace: &str) -> String {
    listing
        .lines()
        .filter(|l| l.starts_with(&format!("{namespace}.")))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3 && (f[1] != "0" || f[2] != "0"))
                .then(|| format!("{}:{}/{}", f[0], f[1], f[2]))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the runner stopped the broker's app and has not started it again. Shared with
/// `main`, which starts the app again after an interruption.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    stopped: Arc<AtomicBool>,
}

impl AppState {
    /// Stops the app; the returned guard starts it again when dropped.
    pub fn stop_app(&self) -> Result<AppGuard> {
        self.stopped.store(true, Ordering::SeqCst);
        let guard = AppGuard(self.clone());
        rabbitmqctl(&["stop_app"])?;
        Ok(guard)
    }

    /// Starts the app if this runner stopped it.
    pub fn restore(&self) {
        if self.stopped.swap(false, Ordering::SeqCst) {
            eprintln!("chaos: starting the broker app again");
            if let Err(e) = rabbitmqctl(&["start_app"]) {
                eprintln!("chaos: {e:#}");
            }
            if let Err(e) = rabbitmqctl(&["await_startup", "--timeout", "120"]) {
                eprintln!("chaos: {e:#}");
            }
        }
    }
}

/// Starts the broker's app again when dropped: on success, failure or interruption.
#[derive(Debug)]
pub struct AppGuard(AppState);

impl Drop for AppGuard {
    fn drop(&mut self) {
        self.0.restore();
    }
}
