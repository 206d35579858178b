//! Transforms: checked at create and update (422 `invalid_transform` with the place),
//! applied at each attempt so that the receiver gets exactly the transform's JSON signed,
//! recorded in the attempt log and dead letters, and previewed without sending anything.

use std::time::Duration;

use hookwire_core::Secret;
use hookwire_testkit::{Harness, Receiver, Recorded, Reply, eventually};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Api, WEBHOOKS, sample, webhook};

const WAIT: Duration = Duration::from_secs(20);
const RUN_URL: &str = "https://modeanalytics.com/api/acme/reports/r1/runs/7";

/// The Slack example of docs/api.md.
const SLACK: &str = r#"{"text": "Report finished: " + body.report_run_url}"#;
const SLACK_BODY: &str =
    r#"{"text":"Report finished: https://modeanalytics.com/api/acme/reports/r1/runs/7"}"#;

/// The Microsoft Teams example of docs/api.md (a Workflows webhook with an Adaptive Card).
const TEAMS: &str = r#"{
  "type": "message",
  "attachments": [{
    "contentType": "application/vnd.microsoft.card.adaptive",
    "content": {
      "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
      "type": "AdaptiveCard",
      "version": "1.4",
      "body": [
        {"type": "TextBlock", "text": "Report finished", "weight": "Bolder"},
        {"type": "TextBlock", "text": body.report_run_url, "wrap": true}
      ]
    }
  }]
}"#;
const TEAMS_BODY: &str = r#"{"attachments":[{"content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","body":[{"text":"Report finished","type":"TextBlock","weight":"Bolder"},{"text":"https://modeanalytics.com/api/acme/reports/r1/runs/7","type":"TextBlock","wrap":true}],"type":"AdaptiveCard","version":"1.4"},"contentType":"application/vnd.microsoft.card.adaptive"}],"type":"message"}"#;

fn runs(url: &str, transform: &str) -> crate::NewWebhook {
    webhook(url)
        .with(json!({"events": ["report_run_completed"], "transform": transform}))
        .unverified()
}

fn verified(secret: &Value, r: &Recorded) -> bool {
    let ts = r.header("webhook-timestamp").parse().expect("timestamp");
    Secret::parse(secret.as_str().expect("secret"))
        .expect("whsec")
        .verify(
            r.header("webhook-id"),
            ts,
            &r.body,
            r.header("webhook-signature"),
        )
        .is_ok()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn attempts(api: &Api, path: &str, n: usize) -> Vec<Value> {
    eventually(WAIT, "the attempt log", || async {
        let (_, page) = api.get(&format!("{path}/attempts")).await;
        let attempts = page["attempts"].as_array().cloned().unwrap_or_default();
        (attempts.len() >= n).then_some(attempts)
    })
    .await
}

/// A Slack-shaped and a Teams-shaped transform each deliver exactly their JSON, signed over
/// those bytes, while a webhook without a transform gets the event's body as it is; the
/// attempt log says which bodies were transformed, with their size and digest.
#[tokio::test]
async fn slack_and_teams_transforms_deliver_exactly_their_bodies_signed() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let (slack, teams, plain) = (
        Receiver::ok().await,
        Receiver::ok().await,
        Receiver::ok().await,
    );
    let slack_hook = api.create(runs(&slack.url(), SLACK)).await;
    assert_eq!(slack_hook.answer["transform"], SLACK);
    let teams_hook = api.create(runs(&teams.url(), TEAMS)).await;
    let plain_hook = api
        .create(
            webhook(&plain.url())
                .with(json!({"events": ["report_run_completed"]}))
                .unverified(),
        )
        .await;
    assert!(plain_hook.answer["transform"].is_null());

    h.publish(
        "acme",
        "report_run_completed",
        "run-7",
        "report_run_url",
        RUN_URL,
    )
    .await;
    for (receiver, created, expected) in [
        (&slack, &slack_hook, SLACK_BODY),
        (&teams, &teams_hook, TEAMS_BODY),
    ] {
        let got = receiver.wait_for(1, WAIT).await;
        assert_eq!(std::str::from_utf8(&got[0].body), Ok(expected));
        assert_eq!(got[0].header("content-type"), "application/json");
        assert!(
            verified(&created.answer["secret"], &got[0]),
            "the signature covers the bytes sent"
        );
        let logged = attempts(&api, &created.path, 1).await;
        assert_eq!(logged[0]["outcome"], "delivered");
        assert_eq!(
            logged[0]["transformed"],
            json!({"bytes": expected.len(), "sha256": sha256(expected.as_bytes())})
        );
    }
    let got = plain.wait_for(1, WAIT).await;
    let event: Value = serde_json::from_slice(&got[0].body).expect("JSON");
    assert_eq!(event["event"], "report_run_completed");
    assert_eq!(event["report_run_url"], RUN_URL);
    assert!(verified(&plain_hook.answer["secret"], &got[0]));
    let logged = attempts(&api, &plain_hook.path, 1).await;
    assert!(logged[0]["transformed"].is_null(), "{logged:?}");
    h.finish().await;
}

/// A transform that gives no body for an event dead-letters that one delivery as
/// `transform_error`, counted as such, with no attempt; the organization's other webhook
/// gets the event. Fixed, a replay of the letter delivers with the transform of now.
#[tokio::test]
async fn a_transform_error_costs_only_its_own_delivery_and_replays_once_fixed() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let (broken, other) = (Receiver::ok().await, Receiver::ok().await);
    let created = api
        .create(runs(&broken.url(), r#"{"text": body.missing_field}"#))
        .await;
    api.create(
        webhook(&other.url())
            .with(json!({"events": ["report_run_completed"]}))
            .unverified(),
    )
    .await;
    let errors = r#"hookwire_deliveries_total{outcome="transform_error"}"#;
    let before = h.metrics().await;
    h.publish(
        "acme",
        "report_run_completed",
        "run-8",
        "report_run_url",
        RUN_URL,
    )
    .await;
    other.wait_for(1, WAIT).await;
    let letter = h.wait_dead_letter("transform_error", WAIT).await;
    assert_eq!(letter.attempts, 0);
    assert!(letter.detail.contains("missing_field"), "{}", letter.detail);
    assert_eq!(letter.transformed, None, "nothing was sent");
    eventually(WAIT, "transform_error counted", || async {
        let after = h.metrics().await;
        (sample(&after, errors) >= sample(&before, errors) + 1.0).then_some(())
    })
    .await;
    assert!(broken.requests().is_empty());
    let (_, page) = api.get(&format!("{}/attempts", created.path)).await;
    assert_eq!(
        page["attempts"],
        json!([]),
        "a transform error is no attempt"
    );
    let (_, fetched) = api.get(&created.path).await;
    assert_eq!(fetched["consecutive_failures"], 0);

    let (status, fixed) = api.patch(&created.path, json!({"transform": SLACK})).await;
    assert_eq!(status, 200, "{fixed}");
    let (status, replayed) = api
        .post(
            "/v1/orgs/acme/dead-letters/replay",
            json!({"ids": [letter.id]}),
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    let got = broken.wait_for(1, WAIT).await;
    assert_eq!(std::str::from_utf8(&got[0].body), Ok(SLACK_BODY));
    h.finish().await;
}

/// A delivery that dies after attempts of a transformed body says what was sent; its
/// archived body is the event's.
#[tokio::test]
async fn a_dead_letter_says_what_its_transformed_attempt_sent() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let refusing = Receiver::start(|_, _| Reply::status(400)).await;
    api.create(runs(&refusing.url(), SLACK)).await;
    h.publish(
        "acme",
        "report_run_completed",
        "run-9",
        "report_run_url",
        RUN_URL,
    )
    .await;
    let letter = h.wait_dead_letter("permanent_status", WAIT).await;
    let sent = letter.transformed.expect("the letter says what was sent");
    assert_eq!(sent.bytes, SLACK_BODY.len() as u64);
    assert_eq!(sent.sha256, sha256(SLACK_BODY.as_bytes()));
    let body: Value = serde_json::from_slice(&letter.body).expect("the event's body");
    assert_eq!(body["report_run_url"], RUN_URL);
    let (_, list) = api.get("/v1/orgs/acme/dead-letters").await;
    assert_eq!(
        list["dead_letters"][0]["transformed"],
        json!({"bytes": SLACK_BODY.len(), "sha256": sha256(SLACK_BODY.as_bytes())})
    );
    h.finish().await;
}

/// Set, changed and removed through the API; the test event of a webhook with a transform
/// is what the transform makes of the catalog's example.
#[tokio::test]
async fn a_transform_round_trips_and_shapes_the_test_event() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let created = api
        .create(
            webhook(&receiver.url())
                .with(json!({"events": ["report_run_completed"], "transform": SLACK})),
        )
        .await;
    let test_event = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(
        std::str::from_utf8(&test_event.body),
        Ok(r#"{"text":"Report finished: https://example.com/report_run/example"}"#)
    );
    let (_, fetched) = api.get(&created.path).await;
    assert_eq!(fetched["transform"], SLACK);
    let (_, listed) = api.get(WEBHOOKS).await;
    assert_eq!(listed["webhooks"][0]["transform"], SLACK);

    let (status, updated) = api
        .patch(&created.path, json!({"transform": "body.tags"}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["transform"], "body.tags");
    let (status, updated) = api
        .patch(&created.path, json!({"description": "kept"}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["transform"], "body.tags", "absent: unchanged");
    let (status, updated) = api.patch(&created.path, json!({"transform": null})).await;
    assert_eq!(status, 200, "{updated}");
    assert!(updated["transform"].is_null());
    assert!(
        h.store
            .list("acme")
            .expect("list")
            .iter()
            .all(|s| s.transform.is_none())
    );
    h.finish().await;
}

/// Each refused transform answers 422 `invalid_transform` with its place, at create and
/// at update, and saves nothing.
#[tokio::test]
async fn invalid_transforms_are_refused_with_their_place() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    // Eight stages that each repeat their element eight times.
    let costly = format!(
        "[event_type]{}",
        ".map(x, x + x + x + x + x + x + x + x)".repeat(8)
    );
    let too_long = format!(r#"{{"a": "{}"}}"#, "x".repeat(4096));
    let cases = [
        (r#"{"text": "#.to_owned(), "line 1, column"),
        (
            r#"{"text": request.path}"#.to_owned(),
            "line 1, column 10: unknown variable `request`: a transform reads `body` and `event_type`",
        ),
        (
            String::new(),
            "a transform is a CEL expression, not empty text",
        ),
        (too_long, "a transform has at most 4096 bytes"),
        (costly, "the transform could take up to"),
    ];
    for (transform, says) in &cases {
        let new = webhook(&receiver.url()).with(json!({ "transform": transform }));
        let message = api.create_refused(new, 422, "invalid_transform").await;
        assert!(message.contains(says), "{transform}: {message}");
    }
    assert!(receiver.requests().is_empty(), "no test event was sent");
    assert!(
        h.store.list("acme").expect("list").is_empty(),
        "nothing was saved"
    );

    let created = api.create(runs(&receiver.url(), SLACK)).await;
    for (transform, says) in &cases {
        let kept = api
            .patch_refused(
                &created.path,
                json!({ "transform": transform }),
                422,
                "invalid_transform",
            )
            .await;
        assert_eq!(
            kept["transform"], SLACK,
            "{says}: the stored transform stays"
        );
    }
    h.finish().await;
}

/// A preview runs the webhook's transform, or a draft's, on the catalog's example or a
/// given body, and answers the exact body and the headers; it sends nothing.
#[tokio::test]
async fn previews_show_the_body_and_headers_without_sending() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let created = api
        .create(
            runs(&receiver.url(), SLACK).with(
                json!({"headers": {"x-team": "reports"}, "secret_headers": {"x-api-key": "k"}}),
            ),
        )
        .await;
    let preview = format!("{}/transform/preview", created.path);

    // The webhook's own transform on the catalog's example.
    let (status, shown) = api
        .post(&preview, json!({"event_type": "report_run_completed"}))
        .await;
    assert_eq!(status, 200, "{shown}");
    let example = r#"{"text":"Report finished: https://example.com/report_run/example"}"#;
    assert_eq!(shown["transformed"], true);
    assert_eq!(shown["body"], example);
    assert_eq!(shown["body_bytes"], example.len());
    assert_eq!(shown["sha256"], sha256(example.as_bytes()));
    let headers = &shown["headers"];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-team"], "reports");
    assert_eq!(
        headers["x-api-key"], "(secret)",
        "a secret value is never shown"
    );
    assert_eq!(
        headers["webhook-signature"],
        "(computed at delivery over the body shown)"
    );
    assert!(
        headers["webhook-id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_")),
        "{headers}"
    );

    // A transform being edited, on a given body.
    let (status, shown) = api
        .post(
            &preview,
            json!({
                "event_type": "report_run_completed",
                "body": {"event": "report_run_completed", "report_run_url": RUN_URL},
                "transform": TEAMS,
            }),
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["body"], TEAMS_BODY);

    // A draft: no webhook yet.
    let draft = format!("{WEBHOOKS}/transform/preview");
    let (status, shown) = api
        .post(
            &draft,
            json!({"event_type": "report_created", "transform": r#"[event_type, body.report_run_url]"#}),
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown["body"],
        r#"["report_created","https://example.com/report_run/example"]"#
    );
    assert!(shown["headers"].get("x-team").is_none());
    let (status, shown) = api
        .post(&draft, json!({"event_type": "definition_created"}))
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["transformed"], false);
    assert_eq!(
        shown["body"],
        r#"{"definition_url":"https://example.com/definition/example","event":"definition_created"}"#
    );

    // What a preview refuses, each with its code.
    for (request, code, says) in [
        (
            json!({"event_type": "report_created", "transform": "{'a': "}),
            "invalid_transform",
            "invalid transform at line 1",
        ),
        (
            json!({"event_type": "report_created", "transform": "{'a': body.nope}"}),
            "transform_error",
            "the transform gives no body for this sample",
        ),
        (
            json!({"event_type": "report_created", "transform": "'text'"}),
            "transform_error",
            "not a map or a list",
        ),
        (
            json!({"event_type": "no_such_event"}),
            "invalid_events",
            "unknown event type `no_such_event`",
        ),
        (
            json!({"event_type": "report_created", "body": [1]}),
            "invalid_sample",
            "a JSON object",
        ),
    ] {
        let (status, answer) = api.post(&draft, request.clone()).await;
        assert_eq!(status, 422, "{request}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{request}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{request}: {message}");
    }
    let (status, _) = api
        .post(
            &format!("{WEBHOOKS}/0190c5b8-0000-7000-8000-000000000000/transform/preview"),
            json!({"event_type": "report_created"}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(receiver.requests().is_empty(), "a preview sends nothing");
    h.finish().await;
}
