//! The tool commands: publish, topology, verify, and configuration errors.

use std::process::Stdio;

use hookwire_amqp::Topology;
use hookwire_testkit::{Broker, Harness, unique_namespace};

use crate::hookwire;

fn output(cmd: &mut std::process::Command) -> (bool, String, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("hookwire runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn topology_declare_then_publish_checks_the_catalog() {
    let ns = unique_namespace();
    let broker = Broker::connect().await;
    // The CLI's client variables must not disturb the config of the same shell.
    let env = [
        ("HOOKWIRE_API_URL", "http://127.0.0.1:1"),
        ("HOOKWIRE_API_TOKEN", "whatever-token"),
    ];
    let (ok, stdout, stderr) = output(
        hookwire()
            .args(["topology", "declare", "--namespace", &ns])
            .envs(env),
    );
    assert!(ok, "declare failed: {stderr}");
    assert!(stdout.contains(&ns));
    let (ok, stdout, stderr) = output(
        hookwire()
            .args(["topology", "declare", "--namespace", &ns, "--json"])
            .envs(env),
    );
    assert!(ok, "declare --json failed: {stderr}");
    let declared: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(declared["declared"], ns.as_str(), "{declared}");
    assert!(declared["retry_tiers"].as_u64() > Some(0), "{declared}");

    let publish = |event: &str, data: &str| {
        output(
            hookwire()
                .args([
                    "publish",
                    "--org",
                    "acme",
                    "--event-type",
                    event,
                    "--data",
                    data,
                    "--event-id",
                    "cli-1",
                ])
                .env("HOOKWIRE_AMQP__NAMESPACE", &ns)
                .envs(env),
        )
    };
    let (ok, stdout, stderr) = publish(
        "report_run_completed",
        r#"{"report_run_url":"https://mode.test/r/1"}"#,
    );
    assert!(ok, "publish failed: {stderr}");
    assert_eq!(stdout.trim(), "cli-1");
    let (ok, stdout, stderr) = output(
        hookwire()
            .args([
                "publish",
                "--org",
                "acme",
                "--event-type",
                "report_run_completed",
            ])
            .args([
                "--data",
                r#"{"report_run_url":"https://mode.test/r/2"}"#,
                "--json",
            ])
            .env("HOOKWIRE_AMQP__NAMESPACE", &ns)
            .envs(env),
    );
    assert!(ok, "publish --json failed: {stderr}");
    let published: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert!(
        published["event_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{published}"
    );
    let (ok, _, stderr) = publish("report_run_exploded", r#"{"report_run_url":"u"}"#);
    assert!(
        !ok && stderr.contains("unknown event type") && stderr.contains("report_run_completed"),
        "{stderr}"
    );
    let (ok, _, stderr) = publish("report_run_completed", r#"{"definition_url":"u"}"#);
    assert!(!ok && stderr.contains("report_run_url"), "{stderr}");
    let (ok, _, stderr) = publish(
        "report_run_completed",
        r#"{"report_run_url":"u","extra":"x"}"#,
    );
    assert!(!ok && stderr.contains("exactly the fields"), "{stderr}");
    let (ok, _, stderr) = publish("report_run_completed", "not json");
    assert!(!ok && stderr.contains("--data is not JSON"), "{stderr}");

    let messages = broker.drain(&format!("{ns}.events")).await;
    assert_eq!(messages.len(), 2, "only the valid events were published");
    assert_eq!(
        messages[0].1,
        br#"{"event":"report_run_completed","report_run_url":"https://mode.test/r/1"}"#
    );
    let channel = broker.connection().create_channel().await.expect("channel");
    let defaults = hookwire_core::Config::defaults();
    Topology::new(
        &ns,
        defaults
            .retry_schedule()
            .expect("schedule")
            .tiers()
            .into_iter()
            .chain([defaults.delivery.defer_delay]),
    )
    .delete(&channel)
    .await
    .expect("cleanup");
}

#[test]
fn publish_to_an_unreachable_broker_fails_clearly() {
    let (ok, _, stderr) = output(
        hookwire()
            .args([
                "publish",
                "--org",
                "acme",
                "--event",
                "report_created",
                "--data",
                r#"{"report_run_url":"u"}"#,
            ])
            .env(
                "HOOKWIRE_AMQP__URL",
                "amqp://guest:secret-pw@127.0.0.1:1/%2f",
            ),
    );
    assert!(!ok);
    assert!(stderr.contains("cannot connect to the broker"), "{stderr}");
    assert!(
        !stderr.contains("secret-pw"),
        "the password is redacted: {stderr}"
    );
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_env = (
        "HOOKWIRE_SECRETS__KEY",
        "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE=",
    );
    let store_env = (
        "HOOKWIRE_STORE__PATH",
        dir.path().to_str().expect("utf-8 path"),
    );
    // (environment, config file text, the key the error must name)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![store_env], None, "secrets.key"),
        (
            vec![store_env, key_env, ("HOOKWIRE_DELIVERY__TIMEOUT", "0s")],
            None,
            "delivery.timeout",
        ),
        (
            vec![store_env, key_env, ("HOOKWIRE_DELIVERY__TIMEOUT", "soon")],
            None,
            "timeout",
        ),
        (
            vec![
                store_env,
                key_env,
                ("HOOKWIRE_AMQP__NAMESPACE", "no spaces"),
            ],
            None,
            "amqp.namespace",
        ),
        (
            vec![store_env, key_env],
            Some("[delivery]\ntimeout_sec = 3\n"),
            "timeout_sec",
        ),
        (
            vec![store_env, key_env],
            Some("[delivery]\nretry_schedule = [\"0s\"]\n"),
            "delivery.retry_schedule",
        ),
        // Keys of earlier releases are refused with their successor's name.
        (
            vec![store_env, key_env],
            Some("[delivery]\ntimeout_secs = 3\n"),
            "`delivery.timeout_secs` is now `delivery.timeout`",
        ),
        (
            vec![
                store_env,
                key_env,
                ("HOOKWIRE_SECRETS__ROTATION_GRACE_SECS", "60"),
            ],
            None,
            "`secrets.rotation_grace_secs` is now `secrets.rotation_grace`",
        ),
        (
            vec![store_env, key_env],
            Some("[delivery]\nca_file = \"\"\n"),
            "delivery.ca_file",
        ),
        (
            vec![store_env, key_env],
            Some("[delivery.proxy]\nurl = \"proxy.internal:3128\"\n"),
            "delivery.proxy.url",
        ),
        (
            vec![store_env, key_env],
            Some("[delivery.proxy]\nurl = \"ftp://127.0.0.1:21\"\n"),
            "scheme `ftp` is not supported",
        ),
        // Read at start: a password file that cannot be read stops `serve`, naming it.
        (
            vec![store_env, key_env],
            Some(
                "[delivery.proxy]\nurl = \"socks5://127.0.0.1:1080\"\nusername = \"hookwire\"\npassword_file = \"/nonexistent/proxy-password\"\n",
            ),
            "delivery.proxy.password_file`: cannot read /nonexistent/proxy-password",
        ),
    ];
    for (env, file, expected) in cases {
        let mut cmd = hookwire();
        cmd.arg("serve").envs(env);
        if let Some(text) = file {
            let path = dir.path().join("bad.toml");
            std::fs::write(&path, text).expect("write");
            cmd.arg("--config").arg(&path);
        }
        let (ok, _, stderr) = output(&mut cmd);
        assert!(!ok, "serve must refuse a config breaking {expected}");
        assert!(
            stderr.to_lowercase().contains(expected), // figment upper-cases keys from the environment
            "error for {expected} must name it: {stderr}"
        );
    }
    let (ok, _, stderr) =
        output(hookwire().args(["serve", "--config", "/nonexistent/hookwire.toml"]));
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn a_bad_worker_thread_override_is_refused_before_anything_runs() {
    let (ok, _, stderr) = output(
        hookwire()
            .args(["serve", "--config", "/nonexistent/hookwire.toml"])
            .env("TOKIO_WORKER_THREADS", "zero"),
    );
    assert!(!ok);
    assert!(
        stderr.contains("TOKIO_WORKER_THREADS must be a whole number")
            && !stderr.contains("does not exist"),
        "the runtime's setting is checked first, and named: {stderr}"
    );
}

/// Two builds of one version are told apart by their commit, from the command line and
/// in a running node's `hookwire_node_info` (docs/operations.md, "Upgrading hookwire").
#[tokio::test]
async fn the_version_and_node_info_name_the_commit_built() {
    // Outside a git checkout (a source archive) the build says "unknown".
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |out| String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        );
    assert_eq!(hookwire_app::COMMIT, head, "built from the checkout's HEAD");

    let (ok, stdout, _) = output(hookwire().arg("--version"));
    assert!(ok);
    assert_eq!(
        stdout.trim(),
        format!("hookwire {} ({head})", env!("CARGO_PKG_VERSION"))
    );
    let h = Harness::start(|_| {}).await;
    let metrics = h.metrics().await;
    let info = metrics
        .lines()
        .find(|l| l.starts_with("hookwire_node_info{"))
        .expect("hookwire_node_info");
    assert!(info.contains(&format!(r#"commit="{head}""#)), "{info}");
    h.finish().await;
}
