//! Tests of the `hookwire` binary as a user runs it: as a child process, against the real
//! broker and loopback receivers.

mod client;
mod commands;
mod operations;
mod serve;

use std::path::Path;
use std::process::Command;

use hookwire_core::Config;

/// The built binary.
pub fn hookwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookwire"))
}

/// Writes `config` as the TOML file `serve --config` reads (loopback-only, like every test).
pub fn write_config(config: &Config, dir: &Path) -> std::path::PathBuf {
    let d = &config.delivery;
    let schedule: Vec<String> = d
        .retry_schedule
        .iter()
        .map(|s| format!("\"{}ms\"", s.as_millis()))
        .collect();
    let text = format!(
        r#"[amqp]
url = "{url}"
namespace = "{ns}"
connection_name = "{name}"
reconnect_max_delay_secs = 1

[store]
path = "{store}"

[api]
listen = "127.0.0.1:0"
tokens = ["{token}"]

[delivery]
retry_schedule = [{schedule}]
defer_delay = "500ms"
timeout_secs = 10
shutdown_grace_secs = 5
allowed_cidrs = ["127.0.0.0/8", "::1/128"]
only_allowed_cidrs = true

[secrets]
key = "{key}"
"#,
        url = config.amqp.url,
        ns = config.amqp.namespace,
        name = config.amqp.connection_name,
        store = config.store.path.display(),
        schedule = schedule.join(", "),
        key = config.secrets.key,
        token = hookwire_testkit::harness::API_TOKEN,
    );
    let path = dir.join("hookwire.toml");
    std::fs::write(&path, text).expect("write config");
    path
}
