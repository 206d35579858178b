//! Create (after the test event), deliver, update, rotate, delete.

use std::time::Duration;

use hookwire_core::Catalog;
use hookwire_core::Secret;
use hookwire_testkit::tools::verify_with_standardwebhooks;
use hookwire_testkit::{Harness, Receiver, Reply};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Api, error_code};

const WAIT: Duration = Duration::from_secs(20);

fn verify(secret: &str, r: &hookwire_testkit::Recorded) -> bool {
    let ts = r.header("webhook-timestamp").parse().expect("timestamp");
    Secret::parse(secret)
        .expect("whsec")
        .verify(
            r.header("webhook-id"),
            ts,
            &r.body,
            r.header("webhook-signature"),
        )
        .is_ok()
}

#[tokio::test]
async fn create_sends_a_test_event_then_every_catalog_event_is_delivered() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let all: Vec<String> = Catalog::builtin()
        .types()
        .filter(|t| !t.operational)
        .map(|t| t.name.clone())
        .collect();
    let (status, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": receiver.url(), "description": "all events", "events": all})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created["id"].as_str().expect("id").to_owned();

    let test_event = receiver.wait_for(1, WAIT).await.remove(0);
    let body: Value = serde_json::from_slice(&test_event.body).expect("JSON");
    assert_eq!(body, json!({"event": "webhook_test", "webhook_id": id}));
    assert!(
        verify(&secret, &test_event),
        "the test event is signed with the new secret"
    );

    for t in Catalog::builtin().types().filter(|t| !t.operational) {
        h.publish(
            "acme",
            &t.name,
            &format!("evt-{}", t.name),
            &t.fields[0],
            "https://mode.test/x",
        )
        .await;
    }
    let got = receiver.wait_for(1 + all.len(), WAIT).await;
    assert!(
        got.iter().all(|r| verify(&secret, r)),
        "every delivery verifies with the secret create returned"
    );
    verify_with_standardwebhooks(&secret, &got[1]).expect("and with the reference library");

    let (status, fetched) = api
        .call(Method::GET, &format!("/v1/orgs/acme/webhooks/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        fetched.get("secret").is_none(),
        "the secret is shown only at create"
    );
    assert_eq!(fetched["description"], "all events");
    h.finish().await;
}

#[tokio::test]
async fn a_failed_test_event_refuses_creation_and_stores_nothing() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let failing = Receiver::start(|_, _| Reply::status(500)).await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": failing.url(), "events": ["report_created"]})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(error_code(&body), "test_event_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("500"),
        "{body}"
    );
    assert_eq!(failing.requests().len(), 1);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": format!("http://127.0.0.1:{port}/"), "events": ["report_created"]})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(error_code(&body), "test_event_failed");

    let (_, list) = api.call(Method::GET, "/v1/orgs/acme/webhooks", None).await;
    assert_eq!(list["webhooks"], json!([]), "nothing was stored");
    assert!(h.store.list("acme").expect("list").is_empty());

    // verify=false skips the test event.
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": failing.url(), "events": ["report_created"]})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        failing.requests().len(),
        1,
        "no test event with verify=false"
    );
    h.finish().await;
}

#[tokio::test]
async fn org_scoping_update_test_and_delete() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let first = Receiver::ok().await;
    let (_, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": first.url(), "events": ["report_created"]})),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/orgs/acme/webhooks/{id}");
    let foreign = format!("/v1/orgs/globex/webhooks/{id}");

    for method in [Method::GET, Method::DELETE] {
        let (status, body) = api.call(method, &foreign, None).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"));
    }
    let (status, _) = api
        .call(Method::PATCH, &foreign, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, 404);
    let (_, other_list) = api
        .call(Method::GET, "/v1/orgs/globex/webhooks", None)
        .await;
    assert_eq!(other_list["webhooks"], json!([]));

    // A new URL must accept the test event too.
    let second = Receiver::ok().await;
    let (status, updated) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"url": second.url(), "events": ["definition_created"]})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(second.requests().len(), 1, "test event sent to the new URL");
    assert_eq!(updated["events"], json!(["definition_created"]));
    let broken = Receiver::start(|_, _| Reply::status(503)).await;
    let (status, body) = api
        .call(Method::PATCH, &path, Some(json!({"url": broken.url()})))
        .await;
    assert_eq!((status, error_code(&body)), (422, "test_event_failed"));
    let (_, unchanged) = api.call(Method::GET, &path, None).await;
    assert_eq!(
        unchanged["url"],
        json!(second.url()),
        "a refused update changes nothing"
    );

    // Disabled webhooks receive nothing; enabling again resumes deliveries.
    let (_, disabled) = api
        .call(Method::PATCH, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(disabled["enabled"], false);
    h.publish(
        "acme",
        "definition_created",
        "while-disabled",
        "definition_url",
        "https://mode.test/d",
    )
    .await;
    let events = format!("{}.events", h.namespace());
    hookwire_testkit::eventually(WAIT, "the event handled while disabled", || async {
        (h.broker.ready(&events).await == 0 && hookwire_testkit::Broker::unacked(&events) == 0)
            .then_some(())
    })
    .await;
    api.call(Method::PATCH, &path, Some(json!({"enabled": true})))
        .await;
    h.publish(
        "acme",
        "definition_created",
        "after-enable",
        "definition_url",
        "https://mode.test/d",
    )
    .await;
    let got = second.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        second.requests().len(),
        2,
        "only the event after enabling: {got:?}"
    );

    let (status, result) = api.call(Method::POST, &format!("{path}/test"), None).await;
    assert_eq!(status, 200);
    assert_eq!(result["delivered"], true);
    assert_eq!(result["status"], 200);

    let (status, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = api.call(Method::GET, &path, None).await;
    assert_eq!(status, 404);
    h.finish().await;
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_grace_only() {
    let h = Harness::start(|c| c.secrets.rotation_grace = Duration::from_secs(2)).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let (_, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": receiver.url(), "events": ["report_created"]})),
        )
        .await;
    let (old, id) = (
        created["secret"].as_str().expect("secret").to_owned(),
        created["id"].as_str().expect("id").to_owned(),
    );
    let (status, rotated) = api
        .call(
            Method::POST,
            &format!("/v1/orgs/acme/webhooks/{id}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let new = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(old, new);

    h.publish(
        "acme",
        "report_created",
        "during-grace",
        "report_run_url",
        "https://mode.test/1",
    )
    .await;
    let during = receiver.wait_for(2, WAIT).await.remove(1);
    verify_with_standardwebhooks(&old, &during).expect("old secret verifies during the grace");
    verify_with_standardwebhooks(&new, &during).expect("new secret verifies during the grace");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.publish(
        "acme",
        "report_created",
        "after-grace",
        "report_run_url",
        "https://mode.test/2",
    )
    .await;
    let after = receiver.wait_for(3, WAIT).await.remove(2);
    verify_with_standardwebhooks(&new, &after).expect("new secret verifies after the grace");
    assert!(
        verify_with_standardwebhooks(&old, &after).is_err(),
        "old secret no longer verifies"
    );
    h.finish().await;
}

#[tokio::test]
async fn event_types_and_health() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let (status, types) = api.call(Method::GET, "/v1/event-types", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = types["event_types"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        10,
        "Mode's eight and the two operational events: {names:?}"
    );
    let operational = types["event_types"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|t| t["operational"] == true)
        .count();
    assert_eq!(operational, 2);
    assert!(
        types["event_types"][0]["description"].is_string()
            && types["event_types"][0]["fields"].is_array()
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let healthz = client
        .get(format!("{}/healthz", h.api_url()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200, "no token needed");
    let readyz = client
        .get(format!("{}/readyz", h.api_url()))
        .send()
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 200);
    h.finish().await;
}
