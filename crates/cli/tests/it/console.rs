//! The web console in a real browser: `tests/node/console_e2e.js` drives Debian's chromium
//! (playwright-core) through every page against this `hookwire serve`, with an access
//! token minted by `hookwire access-tokens create`, and once more through the shipped
//! nginx config (`deploy/nginx/hookwire.conf`) under `/hookwire/`. Its screenshots stay
//! in `test-artifacts/console`.

use std::path::Path;
use std::time::Duration;

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::tools::{artifacts_dir, chromium, nginx, node_dir, run_ok};
use hookwire_testkit::{ServeChild, test_config, unique_namespace};

use crate::reverse_proxy::{PREFIX, Tls, start_proxy};
use crate::{hookwire, write_config};

/// The screenshots the browser test leaves.
const SCREENSHOTS: [&str; 7] = [
    "console-refused",
    "console-created",
    "console-webhook",
    "console-dead-letters",
    "console-phone",
    "console-phone-webhook",
    "console-other-org",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_end_to_end_in_chromium() {
    let chromium = chromium();
    let nginx = nginx();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(&unique_namespace(), &dir.path().join("store"));
    let path = write_config(&config, dir.path());
    let binary = Path::new(env!("CARGO_BIN_EXE_hookwire"));
    let mut serve =
        ServeChild::spawn(binary, &path, &dir.path().join("serve.log"), &[]).expect("serve starts");
    let api = serve
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("serve consumes");
    let base = format!("http://{api}");
    let tls = Tls::new(dir.path());
    let proxy = start_proxy(&nginx, &tls, api).await;

    let minted = run_ok(hookwire().args([
        "access-tokens",
        "create",
        "--org",
        "acme",
        "--ttl",
        "10m",
        "--api",
        &base,
        "--token",
        API_TOKEN,
    ]));
    let scoped = minted.trim();
    assert!(scoped.starts_with("hwa_"), "{minted}");

    let artifacts = artifacts_dir("console");
    let output = tokio::process::Command::new("node")
        .arg(node_dir().join("console_e2e.js"))
        .env("HOOKWIRE_URL", &base)
        .env("ADMIN_TOKEN", API_TOKEN)
        .env("SCOPED_TOKEN", scoped)
        .env("NAMESPACE", &config.amqp.namespace)
        .env("AMQP_URL", &config.amqp.url)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .env(
            "PROXY_URL",
            format!("https://127.0.0.1:{}{PREFIX}", proxy.addr().port()),
        )
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), output)
        .await
        .expect("the browser test ends within 4 minutes")
        .expect("node runs");
    assert!(
        output.status.success(),
        "the browser test failed: {}\nstdout: {}\nstderr: {}\nserve's log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        serve.log_tail()
    );
    for name in SCREENSHOTS {
        let shot = artifacts.join(format!("{name}.png"));
        let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
        assert!(size > 1000, "{} is missing or empty", shot.display());
    }

    serve
        .terminate(Duration::from_secs(30))
        .await
        .expect("serve stops");
    crate::delete_namespace(&config).await;
}
