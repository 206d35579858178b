//! `hookwire webhooks` with custom headers, Ed25519 signatures and a filter, against a
//! live API in-process and a loopback receiver.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use hookwire_testkit::{Harness, Receiver};
use serde_json::Value;

use crate::client::{run_err, run_ok};
use crate::hookwire;

const WAIT: Duration = Duration::from_secs(20);
const FINANCE: &str =
    "body.report_run_url.startsWith('https://modeanalytics.com/api/acme/spaces/finance/')";

/// `hookwire verify --public-key` on a recorded delivery, as a receiver would run it.
fn verify_v1a(public_key: &str, r: &hookwire_testkit::Recorded) -> bool {
    let mut child = hookwire()
        .args(["verify", "--public-key", public_key])
        .args(["--webhook-id", r.header("webhook-id")])
        .args(["--timestamp", r.header("webhook-timestamp")])
        .args(["--signature", r.header("webhook-signature")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&r.body)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok"
}

/// `webhooks create --org acme --url URL --events EVENTS`, then `rest`.
fn create<'a>(url: &'a str, events: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let head = [
        "webhooks", "create", "--org", "acme", "--url", url, "--events", events,
    ];
    [&head[..], rest].concat()
}

/// `webhooks ACTION --org acme --webhook ID`, then `rest`.
fn on<'a>(action: &'a str, id: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    [
        &["webhooks", action, "--org", "acme", "--webhook", id][..],
        rest,
    ]
    .concat()
}

fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no `{name}:` in {stdout}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_ed25519_and_a_filter_through_the_cli() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "Bearer cli-s3cret\n").expect("write");
    let url = receiver.url();
    let token_arg = format!("Authorization={}", token.display());
    let out = run_ok(
        &h,
        &create(
            &url,
            "report_run_completed",
            &[
                "--header",
                "X-Team=reports",
                "--secret-header-file",
                &token_arg,
                "--ed25519",
                "--filter",
                FINANCE,
            ],
        ),
    )
    .await;
    assert_eq!(field(&out, "filter"), FINANCE);
    assert_eq!(
        field(&out, "headers"),
        "x-team: reports, authorization: <secret>"
    );
    assert!(!out.contains("cli-s3cret"), "{out}");
    let public_key = field(&out, "public keys").to_owned();
    assert!(public_key.starts_with("whpk_"), "{out}");
    let id = field(&out, "id").to_owned();

    let test_event = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(test_event.header("authorization"), "Bearer cli-s3cret");
    assert_eq!(test_event.header("x-team"), "reports");
    assert!(
        verify_v1a(&public_key, &test_event),
        "hookwire verify --public-key"
    );

    for (event_id, space) in [("c-1", "ops"), ("c-2", "finance")] {
        h.publish(
            "acme",
            "report_run_completed",
            event_id,
            "report_run_url",
            &format!("https://modeanalytics.com/api/acme/spaces/{space}/reports/r/runs/1"),
        )
        .await;
    }
    let delivered = receiver.wait_for(2, WAIT).await.remove(1);
    let body: Value = serde_json::from_slice(&delivered.body).expect("JSON");
    assert!(
        body["report_run_url"]
            .as_str()
            .unwrap_or_default()
            .contains("/finance/")
    );
    assert!(verify_v1a(&public_key, &delivered));

    let out = run_ok(&h, &on("rotate-ed25519-key", &id, &[])).await;
    let rotated = field(&out, "Public key").to_owned();
    assert!(
        rotated.starts_with("whpk_") && rotated != public_key,
        "{out}"
    );

    let out = run_ok(
        &h,
        &on(
            "update",
            &id,
            &[
                "--remove-header",
                "x-team",
                "--header",
                "X-Env=prod",
                "--no-filter",
                "--no-ed25519",
            ],
        ),
    )
    .await;
    assert_eq!(field(&out, "filter"), "-");
    assert_eq!(
        field(&out, "headers"),
        "x-env: prod, authorization: <secret>"
    );
    assert_eq!(field(&out, "public keys"), "-");
    let json = run_ok(&h, &on("get", &id, &["--json"])).await;
    let json: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["secret_headers"], serde_json::json!(["authorization"]));
    assert!(json["filter"].is_null());

    // Bad input: the API's error, with the filter's place, and a clear CLI error.
    let bad = run_err(&h, &on("update", &id, &["--filter", "body.a =="])).await;
    assert!(
        bad.stderr.contains("invalid_filter") && bad.stderr.contains("line 1, column"),
        "{}",
        bad.stderr
    );
    let bad = run_err(&h, &on("update", &id, &["--header", "X-Team"])).await;
    assert!(bad.stderr.contains("NAME=VALUE"), "{}", bad.stderr);
    let bad = run_err(&h, &on("update", &id, &["--header", "Host=x"])).await;
    assert!(
        bad.stderr.contains("invalid_headers") && bad.stderr.contains("reserved"),
        "{}",
        bad.stderr
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_and_ca_file_through_the_cli() {
    use hookwire_testkit::tls::TestCa;
    let (server_ca, client_ca) = (TestCa::new(), TestCa::new());
    let receiver = Receiver::https_requiring_client_cert(&server_ca, &client_ca).await;
    let h = Harness::start(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = client_ca.client_cert("acme-cli");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let (cert_file, key_file, ca_file) = (
        write("client.pem", &cert),
        write("client.key", &key),
        write("ca.pem", &server_ca.pem()),
    );
    let url = receiver.url();
    // The test event presents the certificate: the receiver refuses anything else.
    let out = run_ok(
        &h,
        &create(
            &url,
            "report_created",
            &[
                "--client-cert",
                &cert_file,
                "--client-key",
                &key_file,
                "--ca-file",
                &ca_file,
            ],
        ),
    )
    .await;
    assert_eq!(receiver.requests().len(), 1, "the test event got through");
    let shown = field(&out, "client cert");
    assert!(
        shown.starts_with("set, expires ") && shown.contains("CN=acme-cli"),
        "{shown}"
    );
    assert!(field(&out, "ca certificates").contains("CN=hookwire test CA"));
    let key_line = key.lines().nth(1).expect("a key line");
    assert!(
        !out.contains(key_line) && !out.contains("PRIVATE KEY"),
        "{out}"
    );
    let id = field(&out, "id").to_owned();
    let out = run_ok(&h, &on("update", &id, &["--no-client-cert"])).await;
    assert_eq!(field(&out, "client cert"), "-");
    // A key without its certificate is refused before any request.
    let run = run_err(&h, &on("update", &id, &["--client-key", &key_file])).await;
    assert!(run.stderr.contains("--client-cert"), "{}", run.stderr);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_policy_through_the_cli() {
    let h = Harness::start(|c| {
        c.delivery.retry_schedule = vec![
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(15),
        ];
    })
    .await;
    let receiver = Receiver::ok().await;
    let url = receiver.url();
    let out = run_ok(
        &h,
        &create(
            &url,
            "report_created",
            &["--retry-schedule", "1s,15s", "--max-age", "30m"],
        ),
    )
    .await;
    assert_eq!(field(&out, "retry"), "schedule 1s,15s; max age 30m");
    let id = field(&out, "id").to_owned();

    let update = |flags: &'static [&'static str]| {
        let id = id.clone();
        let h = &h;
        async move { run_ok(h, &on("update", &id, flags)).await }
    };
    let out = update(&["--no-max-age"]).await;
    assert_eq!(field(&out, "retry"), "schedule 1s,15s; max age daemon's");
    let out = update(&["--retry-schedule", ""]).await;
    assert_eq!(
        field(&out, "retry"),
        "schedule one attempt; max age daemon's"
    );
    let json = run_ok(&h, &on("get", &id, &["--json"])).await;
    let json: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        json["retry"],
        serde_json::json!({"schedule": [], "max_age": null})
    );
    let out = update(&["--no-retry-schedule"]).await;
    assert_eq!(field(&out, "retry"), "-", "the daemon's policy again");

    // A delay that is not a configured tier: the API's 422, named.
    let bad = run_err(&h, &on("update", &id, &["--retry-schedule", "2s"])).await;
    assert!(
        bad.stderr.contains("invalid_retry_policy")
            && bad.stderr.contains("2s is not a configured retry tier"),
        "{}",
        bad.stderr
    );
    let bad = run_err(&h, &on("update", &id, &["--max-age", "1h", "--no-max-age"])).await;
    assert!(bad.stderr.contains("cannot be used with"), "{}", bad.stderr);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_an_expected_version_through_the_cli() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let url = receiver.url();
    let limits = ["--max-concurrency", "4", "--rate-limit-per-sec", "20"];
    let out = run_ok(&h, &create(&url, "report_created", &limits)).await;
    assert_eq!(field(&out, "max concurrency"), "4");
    assert_eq!(field(&out, "rate limit"), "20/s");
    let id = field(&out, "id").to_owned();
    let read = field(&out, "version").to_owned();

    // A change over the version read goes through; what is not given stays.
    let out = run_ok(
        &h,
        &on(
            "update",
            &id,
            &["--rate-limit-per-sec", "50", "--if-version", &read],
        ),
    )
    .await;
    assert_eq!(field(&out, "rate limit"), "50/s");
    assert_eq!(field(&out, "max concurrency"), "4");
    let current = field(&out, "version").to_owned();
    assert_ne!(current, read, "{out}");

    // Over a version someone has changed since: refused, and nothing is saved.
    let stale = run_err(
        &h,
        &on(
            "update",
            &id,
            &["--max-concurrency", "8", "--if-version", &read],
        ),
    )
    .await;
    assert!(
        stale.stderr.contains("(conflict, HTTP 409)") && stale.stderr.contains(&current),
        "{}",
        stale.stderr
    );
    let stale = run_err(&h, &on("rotate-secret", &id, &["--if-version", &read])).await;
    assert!(stale.stderr.contains("conflict"), "{}", stale.stderr);
    let json: Value =
        serde_json::from_str(&run_ok(&h, &on("get", &id, &["--json"])).await).expect("JSON");
    assert_eq!(json["max_concurrency"], 4);
    assert_eq!(json["rate_limit_per_sec"], 50);
    assert_eq!(json["version"].to_string(), current);
    let out = run_ok(&h, &on("rotate-secret", &id, &["--if-version", &current])).await;
    assert!(out.contains("Signing secret: whsec_"), "{out}");

    // The old `--id` still names the webhook.
    let old = run_ok(&h, &["webhooks", "get", "--org", "acme", "--id", &id]).await;
    assert_eq!(field(&old, "id"), id);

    // Out of range: the API's error; not a number: the CLI's, before any request.
    let bad = run_err(&h, &on("update", &id, &["--max-concurrency", "0"])).await;
    assert!(bad.stderr.contains("invalid_limits"), "{}", bad.stderr);
    let bad = run_err(&h, &on("update", &id, &["--if-version", "three"])).await;
    assert!(
        bad.stderr.contains("invalid value 'three'"),
        "{}",
        bad.stderr
    );
    h.finish().await;
}
