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

use crate::{Api, Created, WEBHOOKS, error_code, webhook};

const WAIT: Duration = Duration::from_secs(20);

/// A receiver that holds every answer for `hold`, so a test event stays in flight.
async fn holding(hold: Duration) -> Receiver {
    Receiver::start(move |_, _| Reply {
        delay: hold,
        ..Reply::status(200)
    })
    .await
}

/// A webhook at `target`, and a PATCH in flight that moves it to a receiver holding its
/// test event for `hold`.
struct PatchInFlight {
    webhook: Created,
    /// The receiver the PATCH moves the webhook to, holding its test event.
    held: Receiver,
    patch: tokio::task::JoinHandle<(u16, Value)>,
}

impl PatchInFlight {
    /// Returns once the PATCH's test event reached the holding receiver.
    async fn start(api: &Api, target: &Receiver, hold: Duration) -> Self {
        let webhook = api.create(webhook(&target.url())).await;
        let held = holding(hold).await;
        let request = api
            .request(Method::PATCH, &webhook.path)
            .json(&json!({"url": held.url(), "description": "moved"}));
        let patch = tokio::spawn(Api::send_owned(request));
        held.wait_for(1, WAIT).await;
        Self {
            webhook,
            held,
            patch,
        }
    }

    /// The PATCH's answer, once its test event is answered.
    async fn answer(self) -> (u16, Value) {
        self.patch.await.expect("PATCH task")
    }
}

#[tokio::test]
async fn a_delete_during_a_patchs_test_event_stays_deleted() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let first = Receiver::ok().await;
    let race = PatchInFlight::start(&api, &first, Duration::from_secs(2)).await;
    let path = race.webhook.path.clone();
    let id = Uuid::parse_str(&race.webhook.id).expect("uuid");

    let (status, body) = api.delete(&path).await;
    assert_eq!(status, 204, "{body}");
    assert!(
        race.held.answered().is_empty(),
        "the DELETE landed while the test event was held"
    );

    let (status, body) = race.answer().await;
    assert!(
        status == 409 || status == 404,
        "the PATCH must fail, not resurrect the webhook: {status} {body}"
    );
    let (status, _) = api.get(&path).await;
    assert_eq!(status, 404, "the webhook stays deleted");
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
    let race = PatchInFlight::start(&api, &first, Duration::from_secs(2)).await;
    assert_eq!(race.webhook.answer["version"], 0);
    let path = race.webhook.path.clone();
    let id = Uuid::parse_str(&race.webhook.id).expect("uuid");

    let (status, rotated) = api.post(&format!("{path}/rotate-secret"), None).await;
    assert_eq!(status, 200, "{rotated}");
    let shown = Secret::parse(rotated["secret"].as_str().expect("secret")).expect("whsec");

    let (status, body) = race.answer().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");

    let stored = h.store.get("acme", &id).expect("get").expect("still there");
    assert_eq!(
        stored.keys[0].secret, shown,
        "the secret shown to the user is the one that signs"
    );
    assert_eq!(stored.url, first.url(), "the refused PATCH changed nothing");
    assert_eq!(stored.version, 1);
    let (_, fetched) = api.get(&path).await;
    assert_eq!(fetched["version"], 1);
    h.finish().await;
}

#[tokio::test]
async fn a_patch_with_a_stale_version_is_refused() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let path = api.create(webhook(&receiver.url())).await.path;
    let (status, updated) = api
        .patch(&path, json!({"description": "one", "version": 0}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 1);
    let (status, body) = api
        .patch(&path, json!({"description": "two", "version": 0}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");
    let (_, fetched) = api.get(&path).await;
    assert_eq!(fetched["description"], "one");
    h.finish().await;
}

#[tokio::test]
async fn an_org_at_its_webhook_limit_cannot_create_more() {
    let h = Harness::start(|c| c.api.max_webhooks_per_org = 2).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    api.create(webhook(&receiver.url())).await;
    api.create(webhook(&receiver.url())).await;
    api.create_refused(
        webhook(&receiver.url()).unverified(),
        409,
        "webhook_limit_reached",
    )
    .await;
    assert_eq!(h.store.count("acme").expect("count"), 2);
    // Another organization has its own allowance.
    let (status, body) = api
        .post(
            "/v1/orgs/globex/webhooks?verify=false",
            json!({"url": receiver.url(), "events": ["report_created"]}),
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
        ids.push(api.create(webhook(&receiver.url())).await.id);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => format!("{WEBHOOKS}?limit=2"),
            Some(c) => format!("{WEBHOOKS}?limit=2&cursor={c}"),
        };
        let (status, page) = api.get(&path).await;
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
        let (status, body) = api.get(&format!("{WEBHOOKS}?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    h.finish().await;
}

#[tokio::test]
async fn rotations_leave_a_bounded_signature_header() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let rotate = format!(
        "{}/rotate-secret",
        api.create(webhook(&receiver.url())).await.path
    );
    let mut secret = String::new();
    for _ in 0..10 {
        let (status, rotated) = api.post(&rotate, None).await;
        assert_eq!(status, 200, "{rotated}");
        secret = rotated["secret"].as_str().expect("secret").to_owned();
    }
    h.publish_report("evt-rot", "https://mode.test/r").await;
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
    // Held under the 5 s attempt timeout, long enough for the 410 to disable it.
    let race = PatchInFlight::start(&api, &gone, Duration::from_secs(4)).await;
    let path = race.webhook.path.clone();
    let uuid = Uuid::parse_str(&race.webhook.id).expect("uuid");

    h.publish_report("evt-gone", "https://mode.test/r").await;
    hookwire_testkit::eventually(WAIT, "the 410 to disable the webhook", || async {
        let sub = h.store.get("acme", &uuid).expect("get").expect("there");
        (!sub.enabled).then_some(())
    })
    .await;
    assert!(
        race.held.answered().is_empty(),
        "the webhook was disabled while the PATCH's test event was held"
    );

    let (status, body) = race.answer().await;
    assert_eq!(status, 409, "{body}");
    let (_, fetched) = api.get(&path).await;
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
            api.request(Method::POST, WEBHOOKS)
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
    let path = api.create(webhook(&receiver.url())).await.path;
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
    let (_, fetched) = api.get(&path).await;
    assert_eq!(fetched["version"], 2);
    h.finish().await;
}
