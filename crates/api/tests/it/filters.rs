//! Payload filters: checked at create and update (400 `invalid_filter` with the place),
//! applied before any attempt, and counted rather than logged as failures.

use std::time::Duration;

use hookwire_testkit::{Harness, Receiver, eventually};
use serde_json::{Value, json};

use crate::{Api, NewWebhook, sample, webhook};

const WAIT: Duration = Duration::from_secs(20);
const FILTER_ERRORS: &str = r#"hookwire_deliveries_total{outcome="filter_error"}"#;
const FINANCE: &str =
    r#"body.report_run_url.startsWith("https://modeanalytics.com/api/acme/spaces/finance/")"#;

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

/// A webhook at `url` with `filter`, created without a test event.
fn with_filter(url: &str, filter: impl Into<Value>) -> NewWebhook {
    webhook(url)
        .with(json!({"filter": filter.into()}))
        .unverified()
}

/// Asserts that a PATCH setting `filter` on a webhook at `url` that filters with
/// [`FINANCE`] is refused as `invalid_filter`, and that its filter stays.
async fn refused_on_update(api: &Api, url: &str, filter: &str) {
    let created = api.create(with_filter(url, FINANCE)).await;
    let fetched = api
        .patch_refused(
            &created.path,
            json!({ "filter": filter }),
            400,
            "invalid_filter",
        )
        .await;
    assert_eq!(fetched["filter"], FINANCE, "the stored filter is unchanged");
    assert_eq!(fetched["version"], created.answer["version"]);
}

/// Waits until the metrics' `series` moved by `by` from what `before` scraped.
async fn counted(h: &Harness, before: &str, series: &str, by: f64) -> String {
    eventually(WAIT, &format!("{series} to move by {by}"), || async {
        let after = h.metrics().await;
        (sample(&after, series) >= sample(before, series) + by).then_some(after)
    })
    .await
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
    let runs = json!({"events": ["report_run_completed"]});
    let created = api
        .create(with_filter(&finance.url(), FINANCE).with(runs.clone()))
        .await;
    assert_eq!(created.answer["filter"], FINANCE);
    let filtered = r#"hookwire_deliveries_total{outcome="filtered"}"#;
    let before = h.metrics().await;

    // One subscriber: attempted inline.
    publish_run(&h, "1", "finance").await;
    publish_run(&h, "2", "ops").await;
    let got = finance.wait_for(1, WAIT).await;
    assert_eq!(
        urls(&got),
        ["https://modeanalytics.com/api/acme/spaces/finance/reports/r1/runs/1"]
    );

    // Two subscribers, over inline_fanout_max: published as tasks.
    api.create(webhook(&everything.url()).with(runs).unverified())
        .await;
    publish_run(&h, "3", "ops").await;
    publish_run(&h, "4", "finance").await;
    everything.wait_for(2, WAIT).await;
    let got = finance.wait_for(2, WAIT).await;
    assert_eq!(
        urls(&got)[1],
        "https://modeanalytics.com/api/acme/spaces/finance/reports/r1/runs/4"
    );
    let after = counted(&h, &before, filtered, 2.0).await;
    assert!(after.contains(filtered), "{after}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        finance.requests().len(),
        2,
        "no filtered event reached the receiver"
    );

    // Only the two deliveries are in the attempt log: a filtered event is no attempt.
    let attempts = eventually(WAIT, "the attempt log", || async {
        let (_, page) = api.get(&format!("{}/attempts", created.path)).await;
        let attempts = page["attempts"].as_array().cloned().unwrap_or_default();
        (attempts.len() >= 2).then_some(attempts)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts.iter().all(|a| a["outcome"] == "delivered"));
    assert!(h.dead_letters().is_empty(), "nothing was dead-lettered");
    let (_, fetched) = api.get(&created.path).await;
    assert_eq!(
        fetched["consecutive_failures"], 0,
        "not a failure of the receiver"
    );

    // Removing the filter delivers everything again.
    let (status, updated) = api.patch(&created.path, json!({"filter": null})).await;
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
    api.create(with_filter(&receiver.url(), r#"body.space == "finance""#))
        .await;
    let before = h.metrics().await;
    h.publish_report("no-space", "https://mode.test/1").await;
    counted(&h, &before, FILTER_ERRORS, 1.0).await;
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
        let new = webhook(&receiver.url()).with(json!({ "filter": filter }));
        let message = api.create_refused(new, 400, "invalid_filter").await;
        assert!(message.contains(says), "{filter}: {message}");
    }
    let not_a_string = webhook(&receiver.url()).with(json!({"filter": 3}));
    api.create_refused(not_a_string, 422, "invalid_body").await;
    assert!(receiver.requests().is_empty(), "no test event was sent");
    assert!(
        h.store.list("acme").expect("list").is_empty(),
        "nothing was saved"
    );

    refused_on_update(&api, &receiver.url(), "body.a =").await;
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
    let message = api
        .create_refused(
            with_filter(&receiver.url(), EIGHT_STAGES),
            400,
            "invalid_filter",
        )
        .await;
    assert!(
        message.contains("could take up to") && message.contains("more than the 2,000,000 steps"),
        "{message}"
    );
    assert!(
        h.store.list("acme").expect("list").is_empty(),
        "nothing was saved"
    );

    refused_on_update(&api, &receiver.url(), EIGHT_STAGES).await;
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
    let (stopped, other) = (Receiver::ok().await, Receiver::ok().await);
    // A long pattern: each byte of the text costs it a step per 4 bytes of pattern.
    let filter = format!("body.report_run_url.matches('{}z')", "(y|x)".repeat(12));
    api.create(with_filter(&stopped.url(), filter)).await;
    api.create(webhook(&other.url()).unverified()).await;
    let before = h.metrics().await;
    // Over the producer library's 64 KiB: published raw, as a producer with a raised
    // limit would.
    let long = format!("https://mode.test/{}", "y".repeat(3 << 20));
    let body = json!({"event": "report_created", "report_run_url": long}).to_string();
    h.publish_raw_report("huge", body.as_bytes()).await;
    let got = other.wait_for(1, WAIT).await;
    assert_eq!(urls(&got), [long], "the other webhook got the event");
    counted(&h, &before, FILTER_ERRORS, 1.0).await;
    assert!(stopped.requests().is_empty(), "not delivered");
    assert!(h.dead_letters().is_empty(), "not dead-lettered");
    h.finish().await;
}
