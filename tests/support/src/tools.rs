//! The reference tools of cross-language tests: the Python venv (pika, standardwebhooks)
//! and the Node amqplib install, both set up by `tests/setup-tools`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python. Fails clearly when `tests/setup-tools` has not run.
pub fn python() -> PathBuf {
    let python = std::env::var_os("HOOKWIRE_TEST_PYTHON")
        .map_or_else(|| repo_root().join(".venv/bin/python"), PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run tests/setup-tools (tests/run does) to install pika and standardwebhooks",
        python.display()
    );
    python
}

/// The folder with `publish_amqplib.js` and its node_modules.
pub fn node_dir() -> PathBuf {
    let dir = std::env::var_os("HOOKWIRE_TEST_NODE_DIR")
        .map_or_else(|| repo_root().join("tests/node"), PathBuf::from);
    assert!(
        dir.join("node_modules/amqplib").exists(),
        "amqplib is missing in {}: run tests/setup-tools",
        dir.display()
    );
    dir
}

/// Runs a command, failing the test with its output when it fails; returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Verifies a recorded delivery with the Standard Webhooks reference library (Python).
/// Returns the library's verdict: `Ok` or its error text.
pub fn verify_with_standardwebhooks(secret: &str, request: &crate::Recorded) -> Result<(), String> {
    run_verifier("tests/py/verify_sw.py", &["--secret", secret], request)
}

/// Runs a Python verifier script on a recorded delivery: the key arguments, then the
/// delivery's id, timestamp and signature headers, its exact body on stdin.
fn run_verifier(script: &str, key: &[&str], request: &crate::Recorded) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg(repo_root().join(script))
        .args(key)
        .args(["--id", request.header("webhook-id")])
        .args([
            "--timestamp",
            request.header("webhook-timestamp"),
            "--signature",
            request.header("webhook-signature"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&request.body)
        .expect("write body");
    let out = child.wait_with_output().expect("verifier finishes");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Debian's chromium, which the console's browser tests drive through playwright-core
/// (`HOOKWIRE_TEST_CHROMIUM` overrides it). Fails clearly when `tests/setup-tools` has
/// not installed it.
pub fn chromium() -> PathBuf {
    let chromium = std::env::var_os("HOOKWIRE_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.exists(),
        "{} is missing: run tests/setup-tools (it installs Debian's chromium)",
        chromium.display()
    );
    let playwright = node_dir().join("node_modules/playwright-core");
    assert!(
        playwright.exists(),
        "{} is missing: run tests/setup-tools",
        playwright.display()
    );
    chromium
}

/// A folder for what a test leaves to look at (screenshots): `test-artifacts/<name>` at
/// the repository root (git ignores it), or under `HOOKWIRE_TEST_ARTIFACTS`. Emptied first.
pub fn artifacts_dir(name: &str) -> PathBuf {
    let root = std::env::var_os("HOOKWIRE_TEST_ARTIFACTS")
        .map_or_else(|| repo_root().join("test-artifacts"), PathBuf::from);
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Verifies a recorded delivery's `v1a` signatures with an Ed25519 implementation
/// independent of hookwire's (Python's `cryptography`), over the exact bytes received.
/// Returns its verdict: `Ok` or its error text.
pub fn verify_ed25519_with_cryptography(
    public_key: &str,
    request: &crate::Recorded,
) -> Result<(), String> {
    run_verifier(
        "tests/py/verify_ed25519.py",
        &["--public-key", public_key],
        request,
    )
}

/// Debian's `prometheus` (`HOOKWIRE_TEST_PROMETHEUS` overrides it), for the alert rules'
/// end-to-end test. Fails clearly when `tests/setup-tools` has not installed it.
pub fn prometheus() -> PathBuf {
    packaged_binary(
        "HOOKWIRE_TEST_PROMETHEUS",
        "/usr/bin/prometheus",
        "prometheus",
    )
}

/// Debian's `promtool`, from the same package (`HOOKWIRE_TEST_PROMTOOL` overrides it).
pub fn promtool() -> PathBuf {
    packaged_binary("HOOKWIRE_TEST_PROMTOOL", "/usr/bin/promtool", "prometheus")
}

/// Debian's `nginx` (package `nginx-light`; `HOOKWIRE_TEST_NGINX` overrides it), for the
/// shipped reverse proxy config's end-to-end test. Fails clearly when `tests/setup-tools`
/// has not installed it.
pub fn nginx() -> PathBuf {
    packaged_binary("HOOKWIRE_TEST_NGINX", "/usr/sbin/nginx", "nginx-light")
}

fn packaged_binary(variable: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run tests/setup-tools (it installs Debian's {package})",
        path.display()
    );
    path
}
