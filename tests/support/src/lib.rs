//! Test support for hookwire's integration tests. Everything here talks to the real
//! RabbitMQ on 127.0.0.1:5672 and to real HTTP servers on loopback.
//!
//! - [`broker`]: a unique namespace per test, queue inspection, and clear failures when
//!   the broker is not there.
//! - [`receiver`]: a scriptable HTTP receiver that records requests and counts TCP accepts.
//! - [`overloaded`]: a receiver with a capacity: slower past one knee, 429 and 503 past
//!   another.
//! - [`misbehaving`]: raw-TCP receivers that misbehave on purpose (huge, endless or
//!   trickled responses).
//! - [`proxy`]: an HTTP CONNECT and a SOCKS5 egress proxy that count what reaches them.
//! - [`harness`]: a daemon running in-process against a seeded store.
//! - [`serve_child`]: `hookwire serve` as a child process.
//! - [`cluster`]: a three-node RabbitMQ cluster of its own, for the high-availability tests.
//! - [`tls_broker`]: a RabbitMQ node of its own that speaks AMQP over TLS only.
//! - [`prometheus`]: Debian's Prometheus, scraping `serve` children with the shipped rules.
//! - [`nginx`]: Debian's nginx, running the shipped reverse proxy config.

pub mod broker;
pub mod cluster;
pub mod harness;
pub mod misbehaving;
pub mod nginx;
pub mod overloaded;
pub mod prometheus;
pub mod proxy;
pub mod receiver;
pub mod serve_child;
pub mod tls;
pub mod tls_broker;
pub mod tools;

pub use broker::{Broker, amqp_url, unique_namespace};
pub use cluster::RabbitCluster;
pub use harness::{Harness, new_subscription, test_config};
pub use nginx::Nginx;
pub use prometheus::Prometheus;
pub use receiver::{Receiver, Recorded, Reply};
pub use serve_child::ServeChild;
pub use tls_broker::TlsBroker;

/// Sends the log lines of hookwire and lapin (info and above) to the test's captured
/// output, which the test runner shows when the test fails. Once per test binary; later
/// calls do nothing.
pub fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
