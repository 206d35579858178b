//! `hookwire webhooks …` and `hookwire event-types` against a live API in-process: the
//! harness runs the daemon and the API on this test's runtime, the CLI runs as a child.

use std::process::Stdio;
use std::time::Duration;

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver};
use serde_json::Value;

use crate::hookwire;

/// What one run of the CLI did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `hookwire ARGS` with `env`, off the runtime: `output()` blocks, and the API it
/// talks to is served by this same runtime. `HOOKWIRE_API_*` from the test's own
/// environment never leak in.
pub(crate) async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = hookwire();
    cmd.args(args)
        .env_remove("HOOKWIRE_API_URL")
        .env_remove("HOOKWIRE_API_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the blocking task runs")
        .expect("hookwire runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `hookwire ARGS --api URL --token TOKEN` and requires success.
pub(crate) async fn run_ok(h: &Harness, args: &[&str]) -> String {
    let api = h.api_url();
    let mut all = args.to_vec();
    all.extend(["--api", &api, "--token", API_TOKEN]);
    let run = run_with_env(&all, &[]).await;
    assert!(run.ok, "hookwire {args:?} failed: {}", run.stderr);
    run.stdout
}

/// Runs `hookwire ARGS --api URL --token TOKEN` and requires failure.
pub(crate) async fn run_err(h: &Harness, args: &[&str]) -> Run {
    let api = h.api_url();
    let mut all = args.to_vec();
    all.extend(["--api", &api, "--token", API_TOKEN]);
    let run = run_with_env(&all, &[]).await;
    assert!(!run.ok, "hookwire {args:?} succeeded: {}", run.stdout);
    run
}

/// The `whsec_…` on the line that introduces the secret.
fn secret_in(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Signing secret: "))
        .unwrap_or_else(|| panic!("no secret printed: {stdout}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_round_trip_through_the_cli() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let org = "acme-cli";

    let out = run_ok(&h, &["event-types"]).await;
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("report_created ")),
        "{out}"
    );

    // Create: the receiver gets exactly one signed test event, then the secret is shown.
    let url = receiver.url();
    let out = run_ok(
        &h,
        &[
            "webhooks",
            "create",
            "--org",
            org,
            "--url",
            &url,
            "--events",
            "report_created, report_run_completed",
            "--description",
            "CLI test",
        ],
    )
    .await;
    let requests = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(requests.len(), 1, "exactly one test event");
    let body: Value = serde_json::from_slice(&requests[0].body).expect("test event is JSON");
    assert_eq!(body["event"], "webhook_test");
    let id = body["webhook_id"]
        .as_str()
        .expect("webhook_id is a string")
        .to_owned();
    assert!(
        out.contains(&format!("Created webhook {id} for {org}.")),
        "{out}"
    );
    assert!(out.contains("shown only once"), "{out}");
    let secret = secret_in(&out);
    assert!(secret.starts_with("whsec_"), "{secret}");

    let out = run_ok(&h, &["webhooks", "list", "--org", org]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["ID", "ENABLED", "EVENTS", "URL", "DESCRIPTION"]);
    let row: Vec<&str> = lines.next().expect("one row").split_whitespace().collect();
    assert_eq!(
        row,
        [
            id.as_str(),
            "yes",
            "report_created,report_run_completed",
            &url,
            "CLI",
            "test"
        ]
    );
    assert!(lines.next().is_none(), "one webhook: {out}");

    let out = run_ok(&h, &["webhooks", "get", "--org", org, "--webhook", &id]).await;
    assert!(out.contains(&format!("url:              {url}")), "{out}");
    assert!(out.contains("enabled:          true"), "{out}");
    assert!(!out.contains("whsec_"), "get never shows the secret: {out}");

    // The flags go after the subcommand or before it.
    let api = h.api_url();
    let run = run_with_env(
        &[
            "webhooks",
            "--api",
            &api,
            "--token",
            API_TOKEN,
            "update",
            "--org",
            org,
            "--webhook",
            &id,
            "--disable",
        ],
        &[],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("enabled:          false"),
        "{}",
        run.stdout
    );
    let got: Value = serde_json::from_str(
        &run_ok(
            &h,
            &["webhooks", "get", "--org", org, "--webhook", &id, "--json"],
        )
        .await,
    )
    .expect("--json prints JSON");
    assert_eq!(got["enabled"], false);
    assert_eq!(got["id"], id.as_str());

    let out = run_ok(&h, &["webhooks", "test", "--org", org, "--webhook", &id]).await;
    assert!(
        out.starts_with("Delivered: the receiver answered HTTP 200"),
        "{out}"
    );
    assert_eq!(receiver.wait_for(2, Duration::from_secs(5)).await.len(), 2);

    let out = run_ok(
        &h,
        &["webhooks", "rotate-secret", "--org", org, "--webhook", &id],
    )
    .await;
    let rotated = secret_in(&out);
    assert!(rotated.starts_with("whsec_") && rotated != secret, "{out}");
    assert!(out.contains("previous secret also signs"), "{out}");

    let out = run_ok(&h, &["webhooks", "delete", "--org", org, "--webhook", &id]).await;
    assert_eq!(out.trim(), format!("Deleted webhook {id}."));
    let run = run_err(&h, &["webhooks", "get", "--org", org, "--webhook", &id]).await;
    assert!(
        run.stderr
            .contains(&format!("organization `{org}` has no webhook `{id}`"))
            && run.stderr.contains("not_found")
            && run.stderr.contains("404"),
        "{}",
        run.stderr
    );
    let out = run_ok(&h, &["webhooks", "list", "--org", org]).await;
    assert_eq!(out.trim(), format!("Organization {org} has no webhooks."));
    assert_eq!(receiver.requests().len(), 2, "nothing else was sent");

    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_json_output_and_environment() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let org = "acme-cli-env";
    let api = h.api_url();

    // A wrong token: the API's 401 message, non-zero.
    let run = run_with_env(
        &[
            "webhooks",
            "list",
            "--org",
            org,
            "--api",
            &api,
            "--token",
            "wrong-token",
        ],
        &[],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("a valid `Authorization: Bearer <token>` header is required")
            && run.stderr.contains("unauthorized"),
        "{}",
        run.stderr
    );
    // No token at all is refused before any request.
    let run = run_with_env(&["event-types", "--api", &api], &[]).await;
    assert!(
        !run.ok && run.stderr.contains("no API token"),
        "{}",
        run.stderr
    );

    // Nothing listens: the message names the URL.
    let run = run_with_env(
        &[
            "event-types",
            "--api",
            "http://127.0.0.1:1",
            "--token",
            API_TOKEN,
        ],
        &[],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("cannot reach the hookwire API at http://127.0.0.1:1/"),
        "{}",
        run.stderr
    );

    // The environment instead of the flags.
    let env = [
        ("HOOKWIRE_API_URL", api.as_str()),
        ("HOOKWIRE_API_TOKEN", API_TOKEN),
    ];
    let url = receiver.url();
    let run = run_with_env(
        &[
            "webhooks",
            "create",
            "--org",
            org,
            "--url",
            &url,
            "--events",
            "report_created",
            "--json",
        ],
        &env,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let created: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{created}"
    );
    assert_eq!(created["events"], serde_json::json!(["report_created"]));
    let id = created["id"].as_str().expect("id").to_owned();

    let run = run_with_env(&["webhooks", "list", "--org", org, "--json"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    let list: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    assert_eq!(list["webhooks"][0]["id"], id.as_str());
    let run = run_with_env(&["event-types", "--json"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    let types: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    assert!(
        types["event_types"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "report_created")),
        "{types}"
    );

    // The API's validation messages reach the user.
    let run = run_err(
        &h,
        &[
            "webhooks",
            "update",
            "--org",
            org,
            "--webhook",
            &id,
            "--events",
            "no_such_event",
        ],
    )
    .await;
    assert!(
        run.stderr.contains("unknown event type `no_such_event`")
            && run.stderr.contains("invalid_events"),
        "{}",
        run.stderr
    );
    let run = run_err(&h, &["webhooks", "update", "--org", org, "--webhook", &id]).await;
    assert!(run.stderr.contains("nothing to change"), "{}", run.stderr);

    // --no-verify saves without a test event.
    let before = receiver.requests().len();
    let out = run_ok(
        &h,
        &[
            "webhooks",
            "create",
            "--org",
            org,
            "--url",
            &url,
            "--events",
            "report_created",
            "--no-verify",
        ],
    )
    .await;
    assert!(secret_in(&out).starts_with("whsec_"), "{out}");
    assert_eq!(
        receiver.requests().len(),
        before,
        "--no-verify sends nothing"
    );

    h.finish().await;
}

/// `hookwire webhooks resend`: one event, a range across pages, and the API's refusals
/// as the CLI's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_through_the_cli() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let created: Value = serde_json::from_str(
        &run_ok(
            &h,
            &[
                "webhooks",
                "create",
                "--org",
                "acme",
                "--url",
                &receiver.url(),
                "--events",
                "report_created",
                "--no-verify",
                "--json",
            ],
        )
        .await,
    )
    .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let from = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    for n in 0..3 {
        h.publish(
            "acme",
            "report_created",
            &format!("evt-cli-{n}"),
            "report_run_url",
            &format!("https://mode.test/r/{n}"),
        )
        .await;
    }
    let originals = receiver.wait_for(3, Duration::from_secs(30)).await;
    hookwire_testkit::eventually(Duration::from_secs(30), "three kept events", || async {
        (h.store.payload_stats().expect("stats").0 == 3).then_some(())
    })
    .await;

    let out = run_ok(
        &h,
        &[
            "webhooks",
            "resend",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--event-id",
            "evt-cli-1",
        ],
    )
    .await;
    assert!(out.contains("Resent 1 event(s)"), "{out}");
    let again = receiver.wait_for(4, Duration::from_secs(30)).await;
    let original = originals
        .iter()
        .find(|r| r.body == again[3].body)
        .expect("the same body");
    assert_eq!(again[3].header("webhook-id"), original.header("webhook-id"));

    let to =
        humantime::format_rfc3339_millis(std::time::SystemTime::now() + Duration::from_secs(1))
            .to_string();
    let out = run_ok(
        &h,
        &[
            "webhooks",
            "resend",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--from",
            &from,
            "--to",
            &to,
            "--json",
        ],
    )
    .await;
    let result: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(result["queued"].as_array().map(Vec::len), Some(3), "{out}");
    receiver.wait_for(7, Duration::from_secs(30)).await;

    // `--event` and `--id`, the older spellings, still work.
    let run = run_err(
        &h,
        &[
            "webhooks", "resend", "--org", "acme", "--id", &id, "--event", "nope",
        ],
    )
    .await;
    assert!(
        run.stderr.contains("store.payload_retention"),
        "{}",
        run.stderr
    );
    let run = run_err(
        &h,
        &[
            "webhooks",
            "resend",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--from",
            &to,
            "--to",
            &from,
        ],
    )
    .await;
    assert!(run.stderr.contains("invalid_range"), "{}", run.stderr);
    let run = run_err(
        &h,
        &["webhooks", "resend", "--org", "acme", "--webhook", &id],
    )
    .await;
    assert!(run.stderr.contains("--event-id"), "{}", run.stderr);
    h.finish().await;
}
