//! `hookwire whoami`, `hookwire admin orgs` and the dead letters without an organization
//! (`dead-letters … --admin`) against a live API in-process.

use std::time::Duration;

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver, eventually, new_subscription};
use serde_json::Value;

use crate::client::{run_ok, run_with_env};

const WAIT: Duration = Duration::from_secs(30);

async fn json(h: &Harness, args: &[&str]) -> Value {
    let out = run_ok(h, &[args, &["--json"]].concat()).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_and_the_organizations_through_the_cli() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let api = h.api_url();

    let out = run_ok(&h, &["whoami"]).await;
    assert_eq!(
        out.trim(),
        "operator: every organization and /v1/admin/*; read-write"
    );
    let who = json(&h, &["whoami"]).await;
    assert_eq!(who["kind"], "operator", "{who}");
    let minted = run_ok(
        &h,
        &[
            "access-tokens",
            "create",
            "--org",
            "acme",
            "--ttl",
            "5m",
            "--read-only",
        ],
    )
    .await;
    let reader = minted.trim();
    let run = run_with_env(&["whoami", "--api", &api, "--token", reader], &[]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("organization token for acme; read-only; expires "),
        "{}",
        run.stdout
    );

    let out = run_ok(&h, &["admin", "orgs"]).await;
    assert_eq!(out.trim(), "No organization has webhooks.");
    for org in ["globex", "acme"] {
        h.subscribe(&new_subscription(org, &receiver.url(), &["report_created"]));
    }
    let out = run_ok(&h, &["admin", "orgs"]).await;
    assert_eq!(out.lines().collect::<Vec<_>>(), ["acme", "globex"]);
    let all = json(&h, &["admin", "orgs"]).await;
    assert_eq!(all["orgs"], serde_json::json!(["acme", "globex"]), "{all}");

    // A page of one, the hint to the next on stderr, the next by its cursor, every page.
    let first = run_with_env(
        &[
            "admin", "orgs", "--limit", "1", "--api", &api, "--token", API_TOKEN,
        ],
        &[],
    )
    .await;
    assert!(first.ok, "{}", first.stderr);
    assert_eq!(first.stdout.trim(), "acme");
    let cursor = first
        .stderr
        .split_whitespace()
        .skip_while(|w| *w != "--cursor")
        .nth(1)
        .unwrap_or_else(|| panic!("no cursor hint: {}", first.stderr))
        .to_owned();
    let out = run_ok(&h, &["admin", "orgs", "--limit", "1", "--cursor", &cursor]).await;
    assert_eq!(out.trim(), "globex");
    let every = json(&h, &["admin", "orgs", "--limit", "1", "--all"]).await;
    assert_eq!(every["orgs"], all["orgs"], "{every}");
    assert_eq!(every["next_cursor"], Value::Null);

    // An organization's token cannot list the organizations: the API's refusal, named.
    let run = run_with_env(&["admin", "orgs", "--api", &api, "--token", reader], &[]).await;
    assert!(
        !run.ok && run.stderr.contains("(forbidden, HTTP 403)"),
        "{}",
        run.stderr
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_without_an_organization_replay_through_the_cli() {
    let h = Harness::start(|_| {}).await;
    h.publish_orgless().await;
    h.wait_dead_letters(1, WAIT).await;
    let list = json(&h, &["dead-letters", "list", "--admin"]).await;
    let id = list["dead_letters"][0]["id"]
        .as_str()
        .expect("an orgless dead letter")
        .to_owned();

    let out = run_ok(&h, &["dead-letters", "replay", "--admin", "--ids", &id]).await;
    assert_eq!(out, "Replayed 1 dead letter.\n");
    // Published again still without an organization, it is dead-lettered again: a new
    // letter, for the same reason.
    let again = eventually(WAIT, "the replayed event dead-lettered again", || async {
        let list = json(&h, &["dead-letters", "list", "--admin"]).await;
        let letters = list["dead_letters"].as_array().cloned().unwrap_or_default();
        (letters.len() == 1 && letters[0]["id"] != id.as_str()).then_some(list)
    })
    .await;
    assert_eq!(again["dead_letters"][0]["reason"], "missing_org", "{again}");

    let result = json(
        &h,
        &[
            "dead-letters",
            "replay",
            "--admin",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
    )
    .await;
    assert_eq!(
        result["replayed"].as_array().map(Vec::len),
        Some(1),
        "{result}"
    );
    assert_eq!(result["failed"], serde_json::json!([]));
    h.finish().await;
}
