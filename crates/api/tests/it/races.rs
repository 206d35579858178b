//! Writes that race: a PATCH or a rotation that loaded a webhook, then waited (for its
//! test event), never undoes a change made meanwhile. And the bounds: webhooks per org,
//! the paginated listing, the live signing keys.

use std::time::Duration;

use hookwire_core::Secret;
use hookwire_core::subscription::MAX_SIGNING_KEYS;
use hookwire_testkit::{Harness, Receiver, Reply};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Api, error_code};

const WAIT: Duration = Duration::from_secs(20);

/// A receiver that holds every answer for `hold`, so a test event stays in flight.
async fn holding(hold: Duration) -> Receiver {
    Receiver::start(move |_, _| Reply {
        delay: hold,
        ..Reply::status(200)
    })
    .await
}

async fn create(api: &Api, url: &str) -> (String, Value) {
    let (status, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": url, "events": ["report_created"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (created["id"].as_str().expect("id").to_owned(), created)
}

/// Starts a PATCH to `url` and returns once its test event reached `receiver` (held).
async fn patch_in_flight(
    api: &Api,
    id: &str,
    receiver: &Receiver,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let request = api
        .request(Method::PATCH, &format!("/v1/orgs/acme/webhooks/{id}"))
        .json(&json!({"url": receiver.url(), "description": "moved"}));
    let client = Api::send_owned(request);
    let patch = tokio::spawn(client);
    receiver.wait_for(1, WAIT).await;
    patch
}

#[tokio::test]
async fn a_delete_during_a_patchs_test_event_stays_deleted() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let first = Receiver::ok().await;
    let (id, _) = create(&api, &first.url()).await;
    let slow = holding(Duration::from_secs(2)).await;
    let patch = patch_in_flight(&api, &id, &slow).await;

    let (status, body) = api
        .call(
            Method::DELETE,
            &format!("/v1/orgs/acme/webhooks/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(
        slow.answered().is_empty(),
        "the DELETE landed while the test event was held"
    );

    let (status, body) = patch.await.expect("PATCH task");
    assert!(
        status == 409 || status == 404,
        "the PATCH must fail, not resurrect the webhook: {status} {body}"
    );
    let (status, _) = api
        .call(Method::GET, &format!("/v1/orgs/acme/webhooks/{id}"), None)
        .await;
    assert_eq!(status, 404, "the webhook stays deleted");
    let id = Uuid::parse_str(&id).expect("uuid");
    assert_eq!(h.store.get("acme", &id).expect("get"), None);
    assert!(
        h.store
            .subscribers("acme", "report_created")
            .expect("lookup")
            .is_empty(),
        "and its index entries too"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_rotation_during_a_patchs_test_event_keeps_the_shown_secret() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let first = Receiver::ok().await;
    let (id, created) = create(&api, &first.url()).await;
    assert_eq!(created["version"], 0);
    let slow = holding(Duration::from_secs(2)).await;
    let patch = patch_in_flight(&api, &id, &slow).await;

    let (status, rotated) = api
        .call(
            Method::POST,
            &format!("/v1/orgs/acme/webhooks/{id}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let shown = Secret::parse(rotated["secret"].as_str().expect("secret")).expect("whsec");

    let (status, body) = patch.await.expect("PATCH task");
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");

    let stored = h
        .store
        .get("acme", &Uuid::parse_str(&id).expect("uuid"))
        .expect("get")
        .expect("still there");
    assert_eq!(
        stored.keys[0].secret, shown,
        "the secret shown to the user is the one that signs"
    );
    assert_eq!(stored.url, first.url(), "the refused PATCH changed nothing");
    assert_eq!(stored.version, 1);
    let (_, fetched) = api
        .call(Method::GET, &format!("/v1/orgs/acme/webhooks/{id}"), None)
        .await;
    assert_eq!(fetched["version"], 1);
    h.finish().await;
}

#[tokio::test]
async fn a_patch_with_a_stale_version_is_refused() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let (id, _) = create(&api, &receiver.url()).await;
    let path = format!("/v1/orgs/acme/webhooks/{id}");
    let (status, updated) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"description": "one", "version": 0})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 1);
    let (status, body) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"description": "two", "version": 0})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");
    let (_, fetched) = api.call(Method::GET, &path, None).await;
    assert_eq!(fetched["description"], "one");
    h.finish().await;
}

#[tokio::test]
async fn an_org_at_its_webhook_limit_cannot_create_more() {
    let h = Harness::start(|c| c.api.max_webhooks_per_org = 2).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    create(&api, &receiver.url()).await;
    create(&api, &receiver.url()).await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": receiver.url(), "events": ["report_created"]})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "webhook_limit_reached");
    assert_eq!(h.store.count("acme").expect("count"), 2);
    // Another organization has its own allowance.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/orgs/globex/webhooks?verify=false",
            Some(json!({"url": receiver.url(), "events": ["report_created"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    h.finish().await;
}

#[tokio::test]
async fn the_listing_is_paginated() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create(&api, &receiver.url()).await.0);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/v1/orgs/acme/webhooks?limit=2".to_owned(),
            Some(c) => format!("/v1/orgs/acme/webhooks?limit=2&cursor={c}"),
        };
        let (status, page) = api.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let items = page["webhooks"].as_array().expect("webhooks");
        assert!(items.len() <= 2);
        for w in items {
            assert!(w.get("secret").is_none());
            seen.push(w["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    for bad in ["limit=0", "limit=501", "cursor=nope"] {
        let (status, body) = api
            .call(Method::GET, &format!("/v1/orgs/acme/webhooks?{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    h.finish().await;
}

#[tokio::test]
async fn rotations_leave_a_bounded_signature_header() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let (id, _) = create(&api, &receiver.url()).await;
    let mut secret = String::new();
    for _ in 0..10 {
        let (status, rotated) = api
            .call(
                Method::POST,
                &format!("/v1/orgs/acme/webhooks/{id}/rotate-secret"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{rotated}");
        secret = rotated["secret"].as_str().expect("secret").to_owned();
    }
    h.publish(
        "acme",
        "report_created",
        "evt-rot",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;
    let got = receiver.wait_for(2, WAIT).await;
    let signature = got[1].header("webhook-signature");
    assert_eq!(
        signature.split(' ').count(),
        MAX_SIGNING_KEYS,
        "{signature}"
    );
    let ts = got[1]
        .header("webhook-timestamp")
        .parse()
        .expect("timestamp");
    Secret::parse(&secret)
        .expect("whsec")
        .verify(got[1].header("webhook-id"), ts, &got[1].body, signature)
        .expect("the newest secret verifies");
    h.finish().await;
}

#[tokio::test]
async fn a_webhook_disabled_after_410_during_a_patch_stays_disabled() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    // Accepts the test event, then answers 410 Gone to the delivery.
    let gone = Receiver::start(|n, _| Reply::status(if n == 0 { 200 } else { 410 })).await;
    let (id, _) = create(&api, &gone.url()).await;
    let uuid = Uuid::parse_str(&id).expect("uuid");
    // Held under the 5 s attempt timeout, long enough for the 410 to disable it.
    let slow = holding(Duration::from_secs(4)).await;
    let patch = patch_in_flight(&api, &id, &slow).await;

    h.publish(
        "acme",
        "report_created",
        "evt-gone",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;
    hookwire_testkit::eventually(WAIT, "the 410 to disable the webhook", || async {
        let sub = h.store.get("acme", &uuid).expect("get").expect("there");
        (!sub.enabled).then_some(())
    })
    .await;
    assert!(
        slow.answered().is_empty(),
        "the webhook was disabled while the PATCH's test event was held"
    );

    let (status, body) = patch.await.expect("PATCH task");
    assert_eq!(status, 409, "{body}");
    let (_, fetched) = api
        .call(Method::GET, &format!("/v1/orgs/acme/webhooks/{id}"), None)
        .await;
    assert_eq!(fetched["enabled"], false, "{fetched}");
    assert!(fetched["disabled_reason"].is_string(), "{fetched}");
    assert_eq!(fetched["url"], gone.url().as_str());
    h.finish().await;
}

#[tokio::test]
async fn concurrent_creates_never_pass_the_webhook_limit() {
    let h = Harness::start(|c| c.api.max_webhooks_per_org = 3).await;
    let api = Api::new(&h);
    // Every test event is held, so all creates pass the early check before any is saved.
    let receiver = holding(Duration::from_millis(500)).await;
    let creates = (0..6).map(|_| {
        Api::send_owned(
            api.request(Method::POST, "/v1/orgs/acme/webhooks")
                .json(&json!({"url": receiver.url(), "events": ["report_created"]})),
        )
    });
    let results = futures_util::future::join_all(creates).await;
    let created = results.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 3, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|(status, _)| *status != 201)
            .all(|(status, body)| *status == 409 && error_code(body) == "webhook_limit_reached"),
        "{results:?}"
    );
    assert_eq!(h.store.count("acme").expect("count"), 3);
    h.finish().await;
}

#[tokio::test]
async fn if_match_guards_patch_and_rotate() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let (id, _) = create(&api, &receiver.url()).await;
    let path = format!("/v1/orgs/acme/webhooks/{id}");
    let rotate = format!("{path}/rotate-secret");
    let (status, body) = api
        .send(
            api.request(Method::PATCH, &path)
                .header("if-match", "\"0\"")
                .json(&json!({"description": "one"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    let (status, body) = api
        .send(
            api.request(Method::POST, &rotate)
                .header("if-match", "W/\"0\""),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");
    let (status, body) = api
        .send(api.request(Method::POST, &rotate).header("if-match", "1"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .send(
            api.request(Method::POST, &rotate)
                .header("if-match", "soon"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_if_match");
    let (_, fetched) = api.call(Method::GET, &path, None).await;
    assert_eq!(fetched["version"], 2);
    h.finish().await;
}
