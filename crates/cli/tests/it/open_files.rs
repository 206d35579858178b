//! `serve` raises its soft open-file limit to what `delivery.concurrency` and
//! `api.max_connections` need, and says so at start when the hard limit is lower.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hookwire_core::Config;
use hookwire_testkit::{ServeChild, test_config, unique_namespace};

use crate::write_config;

/// The open-file limits (soft, hard) of process `pid`.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("the open-file line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Starts `serve` under util-linux's `prlimit --nofile=SOFT:HARD` (which execs it, so
/// the pid is serve's) and waits until it is ready.
async fn serve_limited(config: &Config, dir: &Path, soft: u64, hard: u64) -> ServeChild {
    let wrapper = dir.join("serve-limited");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec prlimit --nofile={soft}:{hard} {} \"$@\"\n",
            env!("CARGO_BIN_EXE_hookwire")
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = write_config(config, dir);
    let mut serve =
        ServeChild::spawn(&wrapper, &path, &dir.join("serve.log"), &[]).expect("serve starts");
    serve
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("serve consumes");
    serve
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_soft_limit_is_raised_to_what_the_concurrency_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(&unique_namespace(), &dir.path().join("store"));
    let (_, hard) = open_file_limits(std::process::id());
    let sockets = (config.delivery.concurrency + config.api.max_connections) as u64;
    assert!(
        hard > sockets + 1024,
        "this test needs a hard open-file limit above {sockets} + 1024, not {hard}"
    );

    let mut serve = serve_limited(&config, dir.path(), 256, hard).await;
    let (soft, kept_hard) = open_file_limits(serve.pid());
    assert!(
        soft > sockets && soft < hard,
        "raised to what is needed, not to the hard limit: {soft} of {hard}"
    );
    assert_eq!(kept_hard, hard);
    let log = serve.own_log();
    assert!(
        log.contains("Open-file limit raised") && log.contains(&format!("to={soft}")),
        "{log}"
    );
    assert!(!log.contains("hard open-file limit"), "{log}");
    serve
        .terminate(Duration::from_secs(20))
        .await
        .expect("stops");
    crate::delete_namespace(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_limit_below_the_concurrency_is_said_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(&unique_namespace(), &dir.path().join("store"));

    let mut serve = serve_limited(&config, dir.path(), 300, 300).await;
    assert_eq!(open_file_limits(serve.pid()), (300, 300));
    let log = serve.own_log();
    assert!(
        log.contains("hard open-file limit is below") && log.contains("needed="),
        "{log}"
    );
    serve
        .terminate(Duration::from_secs(20))
        .await
        .expect("stops");
    crate::delete_namespace(&config).await;
}
