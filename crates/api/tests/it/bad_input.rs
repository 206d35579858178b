//! Bad input: 4xx with the error shape and a clear message, never 5xx, nothing stored.

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver};
use reqwest::Method;
use serde_json::json;

use crate::{Api, error_code};

#[tokio::test]
async fn every_bad_request_is_a_4xx_with_a_code_and_nothing_is_stored() {
    let h = Harness::start(|c| c.api.max_body_bytes = 4096).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let url = receiver.url();
    let post = "/v1/orgs/acme/webhooks";
    let cases = vec![
        (
            "unknown field",
            json!({"url": url, "events": ["report_created"], "colour": "red"}),
            422,
            "invalid_body",
        ),
        (
            "missing url",
            json!({"events": ["report_created"]}),
            422,
            "invalid_body",
        ),
        (
            "url not a string",
            json!({"url": 7, "events": ["report_created"]}),
            422,
            "invalid_body",
        ),
        (
            "not http",
            json!({"url": "ftp://127.0.0.1/x", "events": ["report_created"]}),
            422,
            "invalid_url",
        ),
        (
            "not a url",
            json!({"url": "hello", "events": ["report_created"]}),
            422,
            "invalid_url",
        ),
        (
            "credentials",
            json!({"url": format!("http://user:pw@{}/", receiver.addr()), "events": ["report_created"]}),
            422,
            "invalid_url",
        ),
        (
            "long url",
            json!({"url": format!("{url}?{}", "a".repeat(2048)), "events": ["report_created"]}),
            422,
            "invalid_url",
        ),
        (
            "long description",
            json!({"url": url, "description": "d".repeat(1001), "events": ["report_created"]}),
            422,
            "invalid_description",
        ),
        (
            "no events",
            json!({"url": url, "events": []}),
            422,
            "invalid_events",
        ),
        (
            "unknown event",
            json!({"url": url, "events": ["report_exploded"]}),
            422,
            "invalid_events",
        ),
        (
            "refused target",
            json!({"url": "http://10.0.0.1/hook", "events": ["report_created"]}),
            422,
            "target_refused",
        ),
        (
            "refused name",
            json!({"url": "http://internal.example/hook", "events": ["report_created"]}),
            422,
            "target_refused",
        ),
    ];
    for (what, body, status, code) in cases {
        let (got, answer) = api.call(Method::POST, post, Some(body)).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{what}: {answer}"
        );
        if what == "no events" || what == "unknown event" {
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("report_run_completed"),
                "the error lists the valid types: {message}"
            );
        }
    }

    let raw = |body: &'static str, content_type: &'static str| {
        api.request(Method::POST, post)
            .header("content-type", content_type)
            .body(body)
    };
    let (status, body) = api.send(raw("{not json", "application/json")).await;
    assert_eq!((status, error_code(&body)), (400, "malformed_json"));
    let (status, body) = api.send(raw("{}", "text/plain")).await;
    assert_eq!((status, error_code(&body)), (415, "unsupported_media_type"));
    let big = format!(
        r#"{{"url":"{url}","description":"{}","events":["report_created"]}}"#,
        "x".repeat(5000)
    );
    let (status, body) = api
        .send(
            api.request(Method::POST, post)
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));

    let (status, body) = api
        .call(
            Method::POST,
            "/v1/orgs/not%20an%20org/webhooks",
            Some(json!({"url": url, "events": ["report_created"]})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_org"));
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=maybe",
            Some(json!({"url": url, "events": ["report_created"]})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_query"));
    for id in ["0190c5b8-0000-7000-8000-000000000000", "not-a-uuid"] {
        let (status, body) = api
            .call(Method::GET, &format!("/v1/orgs/acme/webhooks/{id}"), None)
            .await;
        assert_eq!((status, error_code(&body)), (404, "not_found"));
    }
    let (status, body) = api.call(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = api.call(Method::PUT, post, None).await;
    assert_eq!((status, error_code(&body)), (405, "method_not_allowed"));

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for auth in [None, Some("Bearer wrong-token-000000"), Some(API_TOKEN)] {
        let mut request = client.get(format!("{}/v1/event-types", h.api_url()));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let (status, body) = api.send(request).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(error_code(&body), "unauthorized");
    }

    assert!(
        receiver.requests().is_empty(),
        "no bad request reached the receiver"
    );
    assert!(
        h.store.list("acme").expect("list").is_empty(),
        "nothing stored"
    );
    h.finish().await;
}

/// With private targets off and no allowlist (production defaults), a loopback receiver
/// is refused at create, even with `verify=false`, and is never connected to.
#[tokio::test]
async fn loopback_targets_are_refused_when_private_targets_are_off() {
    let h = Harness::start(|c| {
        c.delivery.allowed_cidrs = Vec::new();
        c.delivery.only_allowed_cidrs = false;
    })
    .await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let port = receiver.addr().port();
    for url in [
        format!("http://localhost:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
    ] {
        let (status, body) = api
            .call(
                Method::POST,
                "/v1/orgs/acme/webhooks?verify=false",
                Some(json!({"url": url, "events": ["report_created"]})),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (422, "target_refused"),
            "{url}: {body}"
        );
    }
    assert_eq!(receiver.accepts(), 0, "refused before any connection");
    h.finish().await;
}
