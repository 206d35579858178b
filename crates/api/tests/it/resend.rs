//! Resending kept events: one by id, a range a page at a time, what is refused and why.
//! Resent deliveries go through the deliveries queue with a fresh attempt budget and the
//! original `webhook-id`, and verify with the Standard Webhooks reference library.

use std::time::Duration;

use hookwire_core::now_ms;
use hookwire_store::Change;
use hookwire_testkit::tools::verify_with_standardwebhooks;
use hookwire_testkit::{Harness, Receiver, Reply, eventually};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Api, error_code};

const WAIT: Duration = Duration::from_secs(30);
const REPORT: &str = "https://modeanalytics.com/api/acme/spaces/finance/reports/1";

/// Creates a webhook of `acme` to `url` for `events` (and `extra` settings); its id and
/// secret.
async fn create(api: &Api, url: &str, events: &[&str], extra: Value) -> (String, String) {
    let mut body = json!({"url": url, "events": events});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_str().expect("id").to_owned(),
        created["secret"].as_str().expect("secret").to_owned(),
    )
}

/// Waits until the store keeps `event_id`'s body.
async fn kept(h: &Harness, event_id: &str) -> hookwire_store::Payload {
    eventually(WAIT, &format!("`{event_id}` to be kept"), || async {
        h.store.payload("acme", event_id).expect("store")
    })
    .await
}

async fn resend(api: &Api, id: &str, body: Value) -> (u16, Value) {
    api.call(
        Method::POST,
        &format!("/v1/orgs/acme/webhooks/{id}/resend"),
        Some(body),
    )
    .await
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[tokio::test]
async fn a_dead_lettered_event_resent_gets_a_fresh_budget_and_its_original_webhook_id() {
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_millis(200)]).await;
    let api = Api::new(&h);
    // Two failures use the whole budget (one attempt and one retry); then it answers.
    let failing = Receiver::start(|n, _| Reply::status(if n < 2 { 500 } else { 200 })).await;
    let other = Receiver::ok().await;
    let (id, secret) = create(&api, &failing.url(), &["report_created"], json!({})).await;
    create(&api, &other.url(), &["report_created"], json!({})).await;
    h.publish("acme", "report_created", "evt-1", "report_run_url", REPORT)
        .await;
    h.wait_dead_letters(1, WAIT).await;
    let original = failing.wait_for(2, WAIT).await;
    other.wait_for(1, WAIT).await;
    let payload = kept(&h, "evt-1").await;
    assert_eq!(
        h.store.payload_stats().expect("stats"),
        (1, payload.body.len() as u64),
        "one body kept for an event that went to two webhooks"
    );

    let (status, result) = resend(&api, &id, json!({"event_id": "evt-1"})).await;
    assert_eq!(status, 200, "{result}");
    let queued = result["queued"].as_array().expect("queued");
    assert_eq!(queued.len(), 1, "{result}");
    assert_eq!(queued[0]["event_id"], "evt-1");
    assert_eq!(queued[0]["message_id"], original[0].header("webhook-id"));
    assert_eq!(result["next_cursor"], Value::Null);

    let all = failing.wait_for(3, WAIT).await;
    let again = &all[2];
    assert_eq!(again.header("webhook-id"), original[0].header("webhook-id"));
    assert_eq!(again.body, original[0].body, "the producer's exact bytes");
    verify_with_standardwebhooks(&secret, again).expect("the resent delivery verifies");
    let path = format!("/v1/orgs/acme/webhooks/{id}/attempts");
    let attempts = eventually(WAIT, "the resent attempt in the log", || async {
        let (_, page) = api.call(Method::GET, &path, None).await;
        let attempts = page["attempts"].as_array().cloned().unwrap_or_default();
        (attempts.len() == 3).then_some(attempts)
    })
    .await;
    let summary: Vec<(u64, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap_or(0),
                a["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "retry"), (2, "retry"), (1, "delivered")],
        "the resend starts a fresh budget"
    );
    assert!(
        attempts
            .iter()
            .all(|a| a["message_id"] == attempts[0]["message_id"])
    );
    // The other webhook got the event once: a resend goes to one webhook.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.requests().len(), 1);
    h.finish().await;
}

#[tokio::test]
async fn a_range_is_resent_a_page_at_a_time_skipping_what_the_webhook_would_not_get() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let filter = r#"!body.report_run_url.endsWith("/skip")"#;
    let (id, _) = create(
        &api,
        &receiver.url(),
        &["report_created"],
        json!({"filter": filter}),
    )
    .await;
    let from = now_ms();
    for n in 1..=3 {
        let url = format!("{REPORT}/{n}");
        h.publish(
            "acme",
            "report_created",
            &format!("evt-{n}"),
            "report_run_url",
            &url,
        )
        .await;
    }
    h.publish(
        "acme",
        "report_created",
        "evt-filtered",
        "report_run_url",
        &format!("{REPORT}/skip"),
    )
    .await;
    h.publish(
        "acme",
        "report_run_started",
        "evt-other-type",
        "report_run_url",
        REPORT,
    )
    .await;
    for event in ["evt-1", "evt-2", "evt-3", "evt-filtered", "evt-other-type"] {
        kept(&h, event).await;
    }
    receiver.wait_for(3, WAIT).await;
    let to = now_ms() + 1;
    let range = |cursor: Value| json!({"from": rfc3339(from), "to": rfc3339(to), "limit": 2, "cursor": cursor});

    let mut queued = Vec::new();
    let mut skipped = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let (status, page) = resend(&api, &id, range(cursor)).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for q in page["queued"].as_array().expect("queued") {
            queued.push(q["event_id"].as_str().expect("id").to_owned());
        }
        for s in page["skipped"].as_array().expect("skipped") {
            skipped.push((
                s["event_id"].as_str().expect("id").to_owned(),
                s["reason"].as_str().expect("reason").to_owned(),
            ));
        }
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(pages, 3, "five events by twos");
    // Order across events published back to back is the broker's; compare as sets.
    queued.sort();
    assert_eq!(queued, ["evt-1", "evt-2", "evt-3"]);
    skipped.sort();
    assert_eq!(
        skipped,
        [
            ("evt-filtered".to_owned(), "filtered".to_owned()),
            ("evt-other-type".to_owned(), "not_subscribed".to_owned())
        ]
    );
    let all = receiver.wait_for(6, WAIT).await;
    let ids = |r: &[hookwire_testkit::Recorded]| {
        let mut ids: Vec<String> = r
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&all[..3]),
        ids(&all[3..]),
        "the same three webhook-ids again"
    );

    // A range before anything was received resends nothing.
    let (status, empty) = resend(
        &api,
        &id,
        json!({"from": rfc3339(from - 60_000), "to": rfc3339(from - 1)}),
    )
    .await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["queued"], json!([]));
    h.finish().await;
}

#[tokio::test]
async fn an_unknown_or_expired_event_is_404() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let (id, _) = create(&api, &receiver.url(), &["report_created"], json!({})).await;
    let (status, body) = resend(&api, &id, json!({"event_id": "never-published"})).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");

    h.publish(
        "acme",
        "report_created",
        "evt-old",
        "report_run_url",
        REPORT,
    )
    .await;
    kept(&h, "evt-old").await;
    receiver.wait_for(1, WAIT).await;
    // What the retention prune does once the event is older than store.payload_retention.
    h.store
        .apply(Change::PrunePayloads {
            older_than_ms: now_ms() + 1,
            max_bytes: u64::MAX,
            max_bytes_per_org: u64::MAX,
        })
        .expect("prune");
    let (status, body) = resend(&api, &id, json!({"event_id": "evt-old"})).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("store.payload_retention")),
        "{body}"
    );
    h.finish().await;
}

#[tokio::test]
async fn bad_resend_requests_get_clear_errors() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let (id, _) = create(
        &api,
        &receiver.url(),
        &["report_created"],
        json!({"filter": r#"body.report_run_url.endsWith("/1")"#}),
    )
    .await;
    h.publish(
        "acme",
        "report_created",
        "evt-2",
        "report_run_url",
        &format!("{REPORT}/2"),
    )
    .await;
    h.publish(
        "acme",
        "report_run_started",
        "evt-started",
        "report_run_url",
        REPORT,
    )
    .await;
    kept(&h, "evt-2").await;
    kept(&h, "evt-started").await;
    let t = |ms: u64| rfc3339(ms);
    let now = now_ms();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 422, "invalid_selection"),
        (
            json!({"event_id": "evt-2", "from": t(now), "to": t(now + 1)}),
            422,
            "invalid_selection",
        ),
        (
            json!({"event_id": "evt-2", "limit": 5}),
            422,
            "invalid_selection",
        ),
        (json!({"from": t(now)}), 422, "invalid_range"),
        (json!({"to": t(now)}), 422, "invalid_range"),
        (json!({"from": t(now), "to": t(now)}), 422, "invalid_range"),
        (
            json!({"from": t(now + 1000), "to": t(now)}),
            422,
            "invalid_range",
        ),
        (
            json!({"from": "yesterday", "to": t(now)}),
            400,
            "invalid_time",
        ),
        (
            json!({"from": t(now), "to": "2026-13-01T00:00:00Z"}),
            400,
            "invalid_time",
        ),
        (
            json!({"from": t(0), "to": t(now), "limit": 0}),
            400,
            "invalid_limit",
        ),
        (
            json!({"from": t(0), "to": t(now), "limit": 501}),
            400,
            "invalid_limit",
        ),
        (
            json!({"from": t(0), "to": t(now), "cursor": "zz"}),
            400,
            "invalid_cursor",
        ),
        (json!({"event_id": ""}), 400, "invalid_event_id"),
        (
            json!({"event_id": "x".repeat(256)}),
            400,
            "invalid_event_id",
        ),
        (json!({"event": "evt-2"}), 422, "invalid_body"),
        (json!({"event_id": "evt-2"}), 422, "filtered"),
        (json!({"event_id": "evt-started"}), 422, "not_subscribed"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = resend(&api, &id, body.clone()).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{body}: {answer}"
        );
    }
    let (status, answer) = resend(
        &api,
        "0190c5b8-0000-7000-8000-000000000000",
        json!({"event_id": "evt-2"}),
    )
    .await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "not_found"),
        "{answer}"
    );
    let (status, answer) = api
        .request(Method::POST, &format!("/v1/orgs/acme/webhooks/{id}/resend"))
        .body("{\"event_id\":")
        .header("content-type", "application/json")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .expect("answers");
    assert_eq!((status, answer), (400, ()));
    let (status, _) = api
        .call(
            Method::PATCH,
            &format!("/v1/orgs/acme/webhooks/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = resend(&api, &id, json!({"event_id": "evt-2"})).await;
    assert_eq!(
        (status, error_code(&answer)),
        (409, "webhook_disabled"),
        "{answer}"
    );
    assert_eq!(receiver.requests().len(), 0, "nothing was resent");
    h.finish().await;
}
