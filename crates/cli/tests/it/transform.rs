//! `hookwire webhooks` with a transform: `--transform`, `--transform-file`,
//! `--no-transform` and `preview-transform`, against a live API in-process and a loopback
//! receiver.

use std::time::Duration;

use hookwire_testkit::{Harness, Receiver};
use serde_json::Value;

use crate::client::{run_err, run_ok};

const WAIT: Duration = Duration::from_secs(20);
const SLACK: &str = r#"{"text": "Report finished: " + body.report_run_url}"#;

fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no `{name}:` in {stdout}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_set_previewed_changed_and_removed_through_the_cli() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let card = dir.path().join("slack.cel");
    std::fs::write(&card, format!("{SLACK}\n")).expect("write");
    let url = receiver.url();
    let card_arg = card.display().to_string();
    let out = run_ok(
        &h,
        &[
            "webhooks",
            "create",
            "--org",
            "acme",
            "--url",
            &url,
            "--events",
            "report_run_completed",
            "--no-verify",
            "--transform-file",
            &card_arg,
        ],
    )
    .await;
    assert_eq!(field(&out, "transform"), SLACK);
    let id = field(&out, "id").to_owned();

    h.publish(
        "acme",
        "report_run_completed",
        "cli-run",
        "report_run_url",
        "https://mode.test/runs/1",
    )
    .await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        std::str::from_utf8(&got[0].body),
        Ok(r#"{"text":"Report finished: https://mode.test/runs/1"}"#)
    );

    // The webhook's own transform on the catalog's example, then a draft's as JSON.
    let out = run_ok(
        &h,
        &[
            "webhooks",
            "preview-transform",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--event-type",
            "report_run_completed",
        ],
    )
    .await;
    assert!(
        out.contains(r#"{"text":"Report finished: https://example.com/report_run/example"}"#),
        "{out}"
    );
    assert!(out.contains("webhook-signature"), "{out}");
    let sample = dir.path().join("sample.json");
    std::fs::write(
        &sample,
        r#"{"event":"report_created","report_run_url":"https://x.test/1"}"#,
    )
    .expect("write");
    let sample_arg = sample.display().to_string();
    let out = run_ok(
        &h,
        &[
            "webhooks",
            "preview-transform",
            "--org",
            "acme",
            "--event-type",
            "report_created",
            "--body-file",
            &sample_arg,
            "--transform",
            "[body.report_run_url]",
            "--json",
        ],
    )
    .await;
    let preview: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(preview["body"], r#"["https://x.test/1"]"#);
    assert_eq!(preview["transformed"], true);

    let out = run_ok(
        &h,
        &[
            "webhooks",
            "update",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--transform",
            "{'run': body.report_run_url}",
        ],
    )
    .await;
    assert_eq!(field(&out, "transform"), "{'run': body.report_run_url}");

    // Bad input: the API's error with the place, and flags that contradict each other.
    let bad = run_err(
        &h,
        &[
            "webhooks",
            "update",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--transform",
            "{'run': ",
        ],
    )
    .await;
    assert!(
        bad.stderr.contains("invalid_transform") && bad.stderr.contains("line 1, column"),
        "{}",
        bad.stderr
    );
    let bad = run_err(
        &h,
        &[
            "webhooks",
            "update",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--transform",
            "[1]",
            "--no-transform",
        ],
    )
    .await;
    assert!(bad.stderr.contains("--no-transform"), "{}", bad.stderr);
    let bad = run_err(
        &h,
        &[
            "webhooks",
            "preview-transform",
            "--org",
            "acme",
            "--event-type",
            "report_created",
            "--transform",
            "'text'",
        ],
    )
    .await;
    assert!(
        bad.stderr.contains("transform_error") && bad.stderr.contains("not a map or a list"),
        "{}",
        bad.stderr
    );

    let out = run_ok(
        &h,
        &[
            "webhooks",
            "update",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--no-transform",
        ],
    )
    .await;
    assert_eq!(field(&out, "transform"), "-");
    let json = run_ok(
        &h,
        &[
            "webhooks",
            "get",
            "--org",
            "acme",
            "--webhook",
            &id,
            "--json",
        ],
    )
    .await;
    let json: Value = serde_json::from_str(&json).expect("JSON");
    assert!(json["transform"].is_null());
    h.finish().await;
}
