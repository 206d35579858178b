//! `hookwire attempts …` and `hookwire dead-letters …` against a live API in-process: a
//! delivery exhausts its retries, the CLI shows its attempts and its dead letter, replays
//! it once the receiver is fixed, and purges the next one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver, eventually};
use serde_json::Value;

use crate::client::{run_err, run_ok};

const WAIT: Duration = Duration::from_secs(30);

/// The whitespace-separated cells of each line of a table, header first.
fn table(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

async fn json(h: &Harness, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run_ok(h, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_dead_letters_through_the_cli() {
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_millis(500)]).await;
    let fixed = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::until_fixed(500, &fixed).await;
    let url = receiver.url();
    let created = json(
        &h,
        &[
            "webhooks",
            "create",
            "--org",
            "acme",
            "--url",
            &url,
            "--events",
            "report_created",
            "--no-verify",
        ],
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();

    h.publish(
        "acme",
        "report_created",
        "evt-cli-dead",
        "report_run_url",
        "https://mode.test/dead",
    )
    .await;
    h.wait_dead_letters(1, WAIT).await;

    // Two attempts (the first and one retry), both answered 500.
    let list = ["attempts", "list", "--org", "acme", "--webhook", &id];
    let page = eventually(WAIT, "two attempts in the log", || async {
        let page = json(&h, &list).await;
        (page["attempts"].as_array().map(Vec::len) == Some(2)).then_some(page)
    })
    .await;
    let attempts = page["attempts"].as_array().expect("attempts");
    for (n, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], n + 1, "{a}");
        assert_eq!(a["outcome"], "retry", "{a}");
        assert_eq!(a["status"], 500, "{a}");
        assert_eq!(a["event_id"], "evt-cli-dead", "{a}");
    }
    assert_eq!(page["next_cursor"], Value::Null);

    // The table; one page of one, with the hint to the next; the cursor; every page.
    let out = run_ok(&h, &list).await;
    let rows = table(&out);
    assert_eq!(
        rows[0],
        ["AT", "ATTEMPT", "OUTCOME", "STATUS", "LATENCY", "ERROR"]
    );
    assert_eq!(rows.len(), 3, "{out}");
    assert_eq!(rows[1][1..4], ["1", "retry", "500"], "{out}");
    assert_eq!(rows[2][1..4], ["2", "retry", "500"], "{out}");
    assert!(rows[1][4].ends_with("ms"), "{out}");
    let mut one = list.to_vec();
    one.extend(["--limit", "1"]);
    let run = crate::client::run_with_env(
        &[&one[..], &["--api", &h.api_url(), "--token", API_TOKEN]].concat(),
        &[],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(table(&run.stdout).len(), 2, "{}", run.stdout);
    let cursor = run
        .stderr
        .split_whitespace()
        .skip_while(|w| *w != "--cursor")
        .nth(1)
        .unwrap_or_else(|| panic!("no cursor hint: {}", run.stderr))
        .to_owned();
    let mut second = one.clone();
    second.extend(["--cursor", &cursor]);
    let page = json(&h, &second).await;
    assert_eq!(page["attempts"][0]["attempt"], 2, "{page}");
    assert_eq!(page["next_cursor"], Value::Null, "{page}");
    let mut every = one.clone();
    every.push("--all");
    let all = json(&h, &every).await;
    assert_eq!(all["attempts"].as_array().map(Vec::len), Some(2), "{all}");
    assert_eq!(all["next_cursor"], Value::Null);
    let out = run_ok(&h, &every).await;
    assert_eq!(table(&out).len(), 3, "{out}");
    let mut delivered = list.to_vec();
    delivered.extend(["--outcome", "delivered"]);
    let out = run_ok(&h, &delivered).await;
    assert_eq!(
        out.trim(),
        format!("Webhook {id} has no attempts matching the filters.")
    );

    // The dead letter: the table, --json, and the filters.
    let out = run_ok(&h, &["dead-letters", "list", "--org", "acme"]).await;
    let rows = table(&out);
    assert_eq!(
        rows[0],
        [
            "ID", "DEAD", "AT", "REASON", "WEBHOOK", "EVENT", "TYPE", "DETAIL"
        ]
    );
    assert_eq!(rows.len(), 2, "one dead letter: {out}");
    assert_eq!(rows[1][2..5], ["exhausted", &id, "report_created"], "{out}");
    let dead = json(&h, &["dead-letters", "list", "--org", "acme"]).await;
    assert_eq!(dead["dead_letters"][0]["reason"], "exhausted");
    assert_eq!(dead["dead_letters"][0]["webhook_id"], id.as_str());
    assert_eq!(dead["dead_letters"][0]["id"], rows[1][0]);
    // Paged like the attempts: --all follows the cursors (here, one page).
    let every = json(
        &h,
        &[
            "dead-letters",
            "list",
            "--org",
            "acme",
            "--limit",
            "1",
            "--all",
        ],
    )
    .await;
    assert_eq!(every["dead_letters"], dead["dead_letters"], "{every}");
    assert_eq!(every["next_cursor"], Value::Null);
    let other = uuid::Uuid::now_v7().to_string();
    let out = run_ok(
        &h,
        &["dead-letters", "list", "--org", "acme", "--webhook", &other],
    )
    .await;
    assert_eq!(
        out.trim(),
        "No dead letters of organization acme matching the filters."
    );
    let out = run_ok(&h, &["dead-letters", "list", "--admin"]).await;
    assert_eq!(out.trim(), "No dead letters without an organization.");

    // Fixed: replay the webhook's dead letters, and the receiver gets the delivery.
    fixed.store(true, Ordering::SeqCst);
    let out = run_ok(
        &h,
        &["dead-letters", "replay", "--org", "acme", "--webhook", &id],
    )
    .await;
    assert_eq!(out.trim(), "Replayed 1 dead letter.");
    let requests = receiver.wait_for(3, WAIT).await;
    let body: Value = serde_json::from_slice(&requests[2].body).expect("JSON");
    assert_eq!(
        requests[2].header("webhook-id"),
        requests[0].header("webhook-id")
    );
    assert_eq!(body["report_run_url"], "https://mode.test/dead", "{body}");
    eventually(WAIT, "the delivered attempt in the log", || async {
        let page = json(&h, &delivered).await;
        (page["attempts"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let out = run_ok(&h, &["dead-letters", "list", "--org", "acme"]).await;
    assert_eq!(out.trim(), "No dead letters of organization acme.");
    let replay = json(
        &h,
        &[
            "dead-letters",
            "replay",
            "--org",
            "acme",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
    )
    .await;
    assert_eq!(replay, serde_json::json!({"replayed": [], "failed": []}));

    // Broken again: the next event dies too, and purge removes it.
    fixed.store(false, Ordering::SeqCst);
    h.publish(
        "acme",
        "report_created",
        "evt-cli-purge",
        "report_run_url",
        "https://mode.test/purge",
    )
    .await;
    h.wait_dead_letters(1, WAIT).await;
    let out = run_ok(
        &h,
        &[
            "dead-letters",
            "purge",
            "--org",
            "acme",
            "--before",
            "2999-01-01T00:00:00Z",
        ],
    )
    .await;
    assert_eq!(out.trim(), "Purged 1 dead letter.");
    assert!(h.dead_letters().is_empty(), "purged for good");

    // A message without an organization: --admin lists and purges it.
    h.publish_orgless().await;
    h.wait_dead_letters(1, WAIT).await;
    let admin = json(&h, &["dead-letters", "list", "--admin"]).await;
    assert_eq!(admin["dead_letters"][0]["reason"], "missing_org", "{admin}");
    let orgless_id = admin["dead_letters"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let out = run_ok(&h, &["dead-letters", "list", "--org", "acme"]).await;
    assert_eq!(out.trim(), "No dead letters of organization acme.");
    let purged = json(
        &h,
        &["dead-letters", "purge", "--admin", "--ids", &orgless_id],
    )
    .await;
    assert_eq!(purged, serde_json::json!({"purged": 1}));

    // The API's messages reach the user, and the exit code says it failed.
    let run = run_err(
        &h,
        &["attempts", "list", "--org", "acme", "--webhook", &other],
    )
    .await;
    assert!(
        run.stderr.contains("not_found") && run.stderr.contains("404"),
        "{}",
        run.stderr
    );
    let run = run_err(&h, &[&list[..], &["--since", "yesterday"]].concat()).await;
    assert!(
        run.stderr.contains("`since` is not an RFC 3339 time")
            && run.stderr.contains("invalid_time"),
        "{}",
        run.stderr
    );
    let run = run_err(&h, &[&list[..], &["--cursor", "zz"]].concat()).await;
    assert!(run.stderr.contains("invalid_cursor"), "{}", run.stderr);
    let run = run_err(
        &h,
        &["dead-letters", "purge", "--org", "acme", "--before", "soon"],
    )
    .await;
    assert!(
        run.stderr.contains("`before` is not an RFC 3339 time"),
        "{}",
        run.stderr
    );
    let run = run_err(&h, &["dead-letters", "replay", "--org", "acme"]).await;
    assert!(run.stderr.contains("--ids"), "{}", run.stderr);
    let run = run_err(
        &h,
        &["dead-letters", "purge", "--org", "acme", "--ids", "x"],
    )
    .await;
    assert!(run.stderr.contains("is not an id"), "{}", run.stderr);

    h.finish().await;
}
