//! Payload filters: checked at create and update (400 `invalid_filter` with the place),
//! applied before any attempt, and counted rather than logged as failures.

use std::time::Duration;

use hookwire_testkit::{Harness, Receiver, eventually};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use reqwest::Method;
use serde_json::{Value, json};

use crate::operations::sample;
use crate::{Api, error_code};

const WAIT: Duration = Duration::from_secs(20);
const FINANCE: &str =
    r#"body.report_run_url.startsWith("https://modeanalytics.com/api/acme/spaces/finance/")"#;

async fn scrape(h: &Harness) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("{}/metrics", h.api_url()))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}

async fn publish_run(h: &Harness, id: &str, space: &str) {
    h.publish(
        "acme",
        "report_run_completed",
        id,
        "report_run_url",
        &format!("https://modeanalytics.com/api/acme/spaces/{space}/reports/r1/runs/{id}"),
    )
    .await;
}

fn urls(received: &[hookwire_testkit::Recorded]) -> Vec<String> {
    received
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|b| b["report_run_url"].as_str().map(str::to_owned))
        .collect()
}

/// Mode's case: `report_run_completed` only for reports under one space. The filtered-out
/// events are counted, never attempted, never logged as attempts or dead-lettered; both
/// the inline fan-out and the task path (a fan-out larger than `inline_fanout_max`) apply it.
#[tokio::test]
async fn a_filter_delivers_only_matching_events_and_counts_the_rest() {
    let h = Harness::start(|c| c.delivery.inline_fanout_max = 1).await;
    let api = Api::new(&h);
    let finance = Receiver::ok().await;
    let everything = Receiver::ok().await;
    let (status, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": finance.url(), "events": ["report_run_completed"], "filter": FINANCE})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["filter"], FINANCE);
    let id = created["id"].as_str().expect("id").to_owned();
    let filtered = r#"hookwire_deliveries_total{outcome="filtered"}"#;
    let before = scrape(&h).await;

    // One subscriber: attempted inline.
    publish_run(&h, "1", "finance").await;
    publish_run(&h, "2", "ops").await;
    let got = finance.wait_for(1, WAIT).await;
    assert_eq!(
        urls(&got),
        ["https://modeanalytics.com/api/acme/spaces/finance/reports/r1/runs/1"]
    );

    // Two subscribers, over inline_fanout_max: published as tasks.
    api.call(
        Method::POST,
        "/v1/orgs/acme/webhooks?verify=false",
        Some(json!({"url": everything.url(), "events": ["report_run_completed"]})),
    )
    .await;
    publish_run(&h, "3", "ops").await;
    publish_run(&h, "4", "finance").await;
    everything.wait_for(2, WAIT).await;
    let got = finance.wait_for(2, WAIT).await;
    assert_eq!(
        urls(&got)[1],
        "https://modeanalytics.com/api/acme/spaces/finance/reports/r1/runs/4"
    );
    let after = eventually(WAIT, "the filtered count to move", || async {
        let after = scrape(&h).await;
        (sample(&after, filtered) >= sample(&before, filtered) + 2.0).then_some(after)
    })
    .await;
    assert!(after.contains(filtered), "{after}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        finance.requests().len(),
        2,
        "no filtered event reached the receiver"
    );

    // Only the two deliveries are in the attempt log: a filtered event is no attempt.
    let attempts = eventually(WAIT, "the attempt log", || async {
        let (_, page) = api
            .call(
                Method::GET,
                &format!("/v1/orgs/acme/webhooks/{id}/attempts"),
                None,
            )
            .await;
        let attempts = page["attempts"].as_array().cloned().unwrap_or_default();
        (attempts.len() >= 2).then_some(attempts)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts.iter().all(|a| a["outcome"] == "delivered"));
    assert!(h.dead_letters().is_empty(), "nothing was dead-lettered");
    let (_, webhook) = api
        .call(Method::GET, &format!("/v1/orgs/acme/webhooks/{id}"), None)
        .await;
    assert_eq!(
        webhook["consecutive_failures"], 0,
        "not a failure of the receiver"
    );

    // Removing the filter delivers everything again.
    let (status, updated) = api
        .call(
            Method::PATCH,
            &format!("/v1/orgs/acme/webhooks/{id}"),
            Some(json!({"filter": null})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert!(updated["filter"].is_null());
    publish_run(&h, "5", "ops").await;
    let got = finance.wait_for(3, WAIT).await;
    assert!(urls(&got)[2].contains("/spaces/ops/"));
    h.finish().await;
}

/// A filter that fails on an event (a key the body lacks) stops that delivery, counted as
/// `filter_error`, and is not a failure of the receiver.
#[tokio::test]
async fn a_filter_that_fails_on_a_body_stops_the_delivery_and_is_counted() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let (status, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": receiver.url(), "events": ["report_created"], "filter": "body.space == \"finance\""})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let errors = r#"hookwire_deliveries_total{outcome="filter_error"}"#;
    let before = scrape(&h).await;
    h.publish(
        "acme",
        "report_created",
        "no-space",
        "report_run_url",
        "https://mode.test/1",
    )
    .await;
    eventually(WAIT, "the filter error to be counted", || async {
        let after = scrape(&h).await;
        (sample(&after, errors) >= sample(&before, errors) + 1.0).then_some(())
    })
    .await;
    assert!(receiver.requests().is_empty());
    assert!(h.dead_letters().is_empty());
    h.finish().await;
}

/// Each refused filter answers 400 `invalid_filter` with its place, at create and at
/// update, and saves nothing.
#[tokio::test]
async fn invalid_filters_are_refused_with_their_place() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let cases = [
        ("body.report_run_url.startsWith(\"x\") &&", "line 1, column"),
        ("body.a == 1 &&\n  body.b = 2", "line 2, column"),
        (
            "body.tags.exists(t, body.tags.exists(u, u == t))",
            "line 1, column 37: a comprehension",
        ),
        ("body.tags.exists(t, t == body.event)", "predicate"),
        (
            "request.path == \"/\"",
            "line 1, column 1: unknown variable `request`",
        ),
        ("", "not empty"),
    ];
    let too_long = format!("body.a == \"{}\"", "x".repeat(2048));
    let cases = cases
        .iter()
        .map(|(f, says)| ((*f).to_owned(), *says))
        .chain([(too_long, "at most 2048 bytes")]);
    for (filter, says) in cases {
        let (status, answer) = api
            .call(
                Method::POST,
                "/v1/orgs/acme/webhooks",
                Some(
                    json!({"url": receiver.url(), "events": ["report_created"], "filter": filter}),
                ),
            )
            .await;
        assert_eq!(status, 400, "{filter}: {answer}");
        assert_eq!(error_code(&answer), "invalid_filter", "{filter}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{filter}: {message}");
    }
    let (status, answer) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": receiver.url(), "events": ["report_created"], "filter": 3})),
        )
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (422, "invalid_body"),
        "{answer}"
    );
    assert!(receiver.requests().is_empty(), "no test event was sent");
    assert!(
        h.store.list("acme").expect("list").is_empty(),
        "nothing was saved"
    );

    let (_, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": receiver.url(), "events": ["report_created"], "filter": FINANCE})),
        )
        .await;
    let path = format!(
        "/v1/orgs/acme/webhooks/{}",
        created["id"].as_str().expect("id")
    );
    let (status, answer) = api
        .call(Method::PATCH, &path, Some(json!({"filter": "body.a ="})))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "invalid_filter");
    let (_, fetched) = api.call(Method::GET, &path, None).await;
    assert_eq!(fetched["filter"], FINANCE, "the stored filter is unchanged");
    assert_eq!(fetched["version"], created["version"]);
    h.finish().await;
}

/// The filter that took a node to 713 MiB on one event: eight stages, each repeating its
/// element eight times. Refused at create and at update with what is too costly; nothing
/// is saved.
#[tokio::test]
async fn a_filter_whose_cost_can_explode_is_refused() {
    const EIGHT_STAGES: &str = "[event_type].map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x)[0].size() > 0";
    assert_eq!(EIGHT_STAGES.len(), 330);
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let (status, answer) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": receiver.url(), "events": ["report_created"], "filter": EIGHT_STAGES})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "invalid_filter");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("could take up to") && message.contains("more than the 2,000,000 steps"),
        "{message}"
    );
    assert!(
        h.store.list("acme").expect("list").is_empty(),
        "nothing was saved"
    );

    let (_, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": receiver.url(), "events": ["report_created"], "filter": FINANCE})),
        )
        .await;
    let path = format!(
        "/v1/orgs/acme/webhooks/{}",
        created["id"].as_str().expect("id")
    );
    let (status, answer) = api
        .call(Method::PATCH, &path, Some(json!({"filter": EIGHT_STAGES})))
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "invalid_filter"),
        "{answer}"
    );
    let (_, fetched) = api.call(Method::GET, &path, None).await;
    assert_eq!(fetched["filter"], FINANCE, "the stored filter is unchanged");
    h.finish().await;
}

/// A filter within its static bound for a body of 64 KiB meets a far larger body (an
/// operator raised `delivery.max_event_bytes`): the runtime budget stops it, that one
/// delivery is settled as `filter_error`, and the organization's other webhook still
/// gets the event.
#[tokio::test]
async fn a_filter_stopped_at_its_budget_costs_only_its_own_delivery() {
    let h = Harness::start(|c| {
        c.delivery.max_event_bytes = 4 << 20;
        c.store.dead_letter_body_max_bytes = 4 << 20;
    })
    .await;
    let api = Api::new(&h);
    let (filtered, other) = (Receiver::ok().await, Receiver::ok().await);
    // A long pattern: each byte of the text costs it a step per 4 bytes of pattern.
    let filter = format!("body.report_run_url.matches('{}z')", "(y|x)".repeat(12));
    for (receiver, filter) in [(&filtered, Some(filter)), (&other, None)] {
        let (status, created) = api
            .call(
                Method::POST,
                "/v1/orgs/acme/webhooks?verify=false",
                Some(
                    json!({"url": receiver.url(), "events": ["report_created"], "filter": filter}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{created}");
    }
    let errors = r#"hookwire_deliveries_total{outcome="filter_error"}"#;
    let before = scrape(&h).await;
    // Over the producer library's 64 KiB: published raw, as a producer with a raised
    // limit would.
    let long = format!("https://mode.test/{}", "y".repeat(3 << 20));
    let body = json!({"event": "report_created", "report_run_url": long}).to_string();
    let mut headers = FieldTable::default();
    headers.insert("org".into(), AMQPValue::LongString("acme".into()));
    h.broker
        .publish_raw(
            h.namespace(),
            "report_created",
            body.as_bytes(),
            BasicProperties::default()
                .with_message_id("huge".into())
                .with_headers(headers),
        )
        .await;
    let got = other.wait_for(1, WAIT).await;
    assert_eq!(urls(&got), [long], "the other webhook got the event");
    eventually(WAIT, "the budget stop to be counted", || async {
        let after = scrape(&h).await;
        (sample(&after, errors) >= sample(&before, errors) + 1.0).then_some(())
    })
    .await;
    assert!(filtered.requests().is_empty(), "not delivered");
    assert!(h.dead_letters().is_empty(), "not dead-lettered");
    h.finish().await;
}
