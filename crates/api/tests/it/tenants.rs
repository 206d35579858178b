//! What a token limited to organizations cannot do to others: skip a receiver's consent,
//! hand a secret header to a new receiver, or turn resend into an amplifier.

use std::time::Duration;

use hookwire_core::config::{Config, OrgToken};
use hookwire_testkit::{Harness, Receiver, Reply, eventually};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Api, error_code};

const WAIT: Duration = Duration::from_secs(30);
const ACME_TOKEN: &str = "acme-writer-token-0123456789";

fn with_acme_token(c: &mut Config) {
    c.api.org_tokens = vec![OrgToken {
        token: ACME_TOKEN.into(),
        orgs: vec!["acme".into()],
        read_only: false,
    }];
}

async fn call_as(api: &Api, token: &str, method: Method, path: &str, body: Value) -> (u16, Value) {
    api.send(api.request_as(token, method, path).json(&body))
        .await
}

#[tokio::test]
async fn only_an_operator_may_skip_the_test_event() {
    let h = Harness::start(with_acme_token).await;
    let api = Api::new(&h);
    let receiver = Receiver::start(|_, _| Reply::status(500)).await;
    let webhook = json!({"url": receiver.url(), "events": ["report_created"]});
    let path = "/v1/orgs/acme/webhooks?verify=false";
    let (status, body) = call_as(&api, ACME_TOKEN, Method::POST, path, webhook.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "verify_required");
    assert_eq!(receiver.accepts(), 0, "refused before any request");

    let (status, created) = api.call(Method::POST, path, Some(webhook)).await;
    assert_eq!(status, 201, "an operator may: {created}");
    let id = created["id"].as_str().expect("id");
    let other = Receiver::start(|_, _| Reply::status(500)).await;
    let (status, body) = call_as(
        &api,
        ACME_TOKEN,
        Method::PATCH,
        &format!("/v1/orgs/acme/webhooks/{id}?verify=false"),
        json!({"url": other.url()}),
    )
    .await;
    assert_eq!(status, 403, "nor re-point one unverified: {body}");
    assert_eq!(error_code(&body), "verify_required");
    let (status, body) = call_as(
        &api,
        ACME_TOKEN,
        Method::PATCH,
        &format!("/v1/orgs/acme/webhooks/{id}"),
        json!({"url": other.url()}),
    )
    .await;
    assert_eq!(
        status, 422,
        "with the test event, a failing receiver refuses: {body}"
    );
    assert_eq!(error_code(&body), "test_event_failed");
    h.finish().await;
}

#[tokio::test]
async fn a_new_url_gets_no_secret_header_unless_the_request_gives_it_again() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let first = Receiver::ok().await;
    let (status, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({
                "url": first.url(),
                "events": ["report_created"],
                "headers": {"X-Team": "reports"},
                "secret_headers": {"Authorization": "Bearer s3cret", "X-Api-Key": "k3y"},
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let path = format!("/v1/orgs/acme/webhooks/{id}");

    let second = Receiver::ok().await;
    let (status, moved) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"url": second.url(), "secret_headers": {"X-Api-Key": "new-k3y"}})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        moved["secret_headers"],
        json!(["x-api-key"]),
        "only the secret header given again stays"
    );
    assert_eq!(
        moved["headers"],
        json!({"x-team": "reports"}),
        "plain ones stay"
    );
    let test_event = &second.requests()[0];
    assert_eq!(
        test_event.header("authorization"),
        "",
        "the old secret never reached it"
    );
    assert_eq!(test_event.header("x-api-key"), "new-k3y");

    let (status, same_url) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"description": "renamed"})),
        )
        .await;
    assert_eq!(status, 200, "{same_url}");
    assert_eq!(
        same_url["secret_headers"],
        json!(["x-api-key"]),
        "no URL change, no loss"
    );
    h.finish().await;
}

#[tokio::test]
async fn resend_is_cut_to_the_budget_then_refused_with_retry_after() {
    let h = Harness::start(|c| {
        // Bursts of 25 s of these rates: 25 per webhook, 50 per organization.
        c.api.resend_per_webhook_per_sec = 1;
        c.api.resend_per_org_per_sec = 2;
    })
    .await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, created) = api
            .call(
                Method::POST,
                "/v1/orgs/acme/webhooks",
                Some(json!({"url": receiver.url(), "events": ["report_created"]})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let from = hookwire_core::now_ms();
    for i in 0..40 {
        h.publish_report(&format!("evt-{i}"), "https://mode.test/r")
            .await;
    }
    eventually(WAIT, "every event to be kept", || async {
        (h.store.payload_stats().expect("stats").0 >= 40).then_some(())
    })
    .await;
    let range = json!({
        "from": rfc3339(from.saturating_sub(1000)),
        "to": rfc3339(hookwire_core::now_ms() + 1000),
    });
    let resend = |id: &str| format!("/v1/orgs/acme/webhooks/{id}/resend");

    let (status, first) = api
        .call(Method::POST, &resend(&ids[0]), Some(range.clone()))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["queued"].as_array().map(Vec::len),
        Some(25),
        "one burst: {first}"
    );
    assert!(
        first["next_cursor"].is_string(),
        "the rest of the range waits: {first}"
    );

    let response = api
        .request(Method::POST, &resend(&ids[0]))
        .json(&range)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in whole seconds");
    assert!(retry_after >= 1, "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), "resend_rate_limited");

    let (status, second) = api
        .call(Method::POST, &resend(&ids[1]), Some(range.clone()))
        .await;
    assert_eq!(status, 200, "another webhook has its own budget: {second}");
    assert_eq!(
        second["queued"].as_array().map(Vec::len),
        Some(25),
        "but the organization had 50 - 25 left: {second}"
    );
    let (status, third) = api.call(Method::POST, &resend(&ids[2]), Some(range)).await;
    assert_eq!(status, 429, "the organization's budget is spent: {third}");
    h.finish().await;
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[tokio::test]
async fn an_organization_without_webhooks_fills_no_archive() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    // acme has a webhook, though not for this type: its events are kept for a later one.
    h.subscribe(&hookwire_testkit::new_subscription(
        "acme",
        &receiver.url(),
        &["definition_created"],
    ));
    h.publish(
        "nobody",
        "report_created",
        "evt-n",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;
    h.publish(
        "acme",
        "report_created",
        "evt-a",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;
    eventually(WAIT, "acme's event to be kept", || async {
        h.store.payload("acme", "evt-a").expect("store")
    })
    .await;
    assert_eq!(
        h.store.payload("nobody", "evt-n").expect("store"),
        None,
        "an organization without any webhook has nothing to resend to"
    );
    h.finish().await;
}
