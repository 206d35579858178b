//! Tests of the `hookwire` binary as a user runs it: as a child process, against the real
//! broker and loopback receivers.

mod admin;
mod alerts;
mod backup;
mod broker_tls;
mod catching_up;
mod client;
mod cluster;
mod commands;
mod console;
mod delivery_options;
mod full_disk;
mod open_files;
mod operations;
mod progress;
mod publish;
mod reload;
mod reverse_proxy;
mod serve;
mod store;
mod stream_bounds;
mod stream_guard;
mod transform;
mod verify;

use std::ops::Range;
use std::path::Path;
use std::process::Command;

use hookwire_amqp::{OutgoingEvent, Producer};
use hookwire_core::Config;

/// A producer into `config`'s namespace on the test broker.
pub async fn producer_for(config: &Config) -> Producer {
    Producer::connect(
        &config.amqp.url,
        &config.amqp.namespace,
        "hookwire-test-producer",
        hookwire_core::Catalog::builtin(),
    )
    .await
    .expect("producer")
}

/// Waits until no process (a dropped store's threads included) holds sled's lock.
pub fn wait_unlocked(store: &Path) {
    let db = std::fs::File::open(store.join("db")).expect("sled's file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // SAFETY: flock on a file descriptor this function owns.
    #[allow(unsafe_code)]
    while unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&db),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the store stays locked"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Closing the file releases the lock.
}

/// Deletes `config`'s namespace on the test broker.
pub async fn delete_namespace(config: &Config) {
    let broker = hookwire_testkit::Broker::connect().await;
    let channel = broker.connection().create_channel().await.expect("channel");
    hookwire_amqp::Topology::of_config(config)
        .expect("topology")
        .delete(&channel)
        .await
        .expect("namespace deleted");
}

/// The body of the first `/readyz` 503 of the API at `api` within `wait`, waited for as
/// `what`.
pub async fn not_ready(
    api: std::net::SocketAddr,
    wait: std::time::Duration,
    what: &str,
) -> serde_json::Value {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    hookwire_testkit::eventually(wait, what, || async {
        let answer = http.get(format!("http://{api}/readyz")).send().await.ok()?;
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.ok()?;
        (status == 503).then_some(body)
    })
    .await
}

/// The built binary.
pub fn hookwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookwire"))
}

/// Writes `config` as the TOML file `serve --config` reads (loopback-only, like every test).
pub fn write_config(config: &Config, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("hookwire.toml");
    std::fs::write(&path, config.to_toml()).expect("write config");
    path
}

/// Publishes `acme`'s `report_run_completed` events `evt-{i}` for each `i` of `ids`, each
/// with its own URL.
pub async fn publish_runs(producer: &Producer, ids: Range<usize>) {
    for i in ids {
        let data = serde_json::from_value(
            serde_json::json!({"report_run_url": format!("https://mode.test/runs/{i}")}),
        )
        .expect("a map");
        let event = OutgoingEvent {
            org: "acme".into(),
            event_type: "report_run_completed".into(),
            id: format!("evt-{i}"),
            data,
        };
        producer.publish(&event).await.expect("publish");
    }
}
