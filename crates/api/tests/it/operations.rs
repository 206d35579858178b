//! The attempt log and the dead letters, through the API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hookwire_core::trace::{SpanContext, TraceParent};
use hookwire_testkit::{Harness, Receiver, Reply, eventually};
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

use crate::{Api, error_code, sample, webhook, webhook_path};

const WAIT: Duration = Duration::from_secs(30);
const DEAD_LETTERS: &str = "/v1/orgs/acme/dead-letters";

/// A webhook of `acme` at `url`, created without a test event: its id.
async fn create(api: &Api, url: &str) -> String {
    api.create(webhook(url).unverified()).await.id
}

/// Waits until `acme`'s dead-letter listing holds `n`, and returns it.
async fn dead_letters(api: &Api, n: usize) -> Value {
    eventually(WAIT, &format!("{n} dead letters for acme"), || async {
        let (_, list) = api.get(DEAD_LETTERS).await;
        (list["dead_letters"].as_array().map(Vec::len) == Some(n)).then_some(list)
    })
    .await
}

/// Replays every dead letter of `acme`, and asserts that `n` were.
async fn replay_all(api: &Api, n: usize) {
    let (status, result) = api
        .post(
            &format!("{DEAD_LETTERS}/replay"),
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        result["replayed"].as_array().map(Vec::len),
        Some(n),
        "{result}"
    );
}

#[tokio::test]
async fn attempts_of_a_retried_delivery_in_order_with_pages_and_filters() {
    let h = Harness::start(|c| {
        c.delivery.retry_schedule = vec![Duration::from_millis(500), Duration::from_millis(500)]
    })
    .await;
    let api = Api::new(&h);
    let receiver = Receiver::start(|n, _| Reply::status(if n < 2 { 500 } else { 200 })).await;
    let id = create(&api, &receiver.url()).await;
    h.publish_report("evt-log", "https://mode.test/1").await;
    receiver.wait_for(3, WAIT).await;
    let path = format!("{}/attempts", webhook_path(&id));
    let page = eventually(WAIT, "three attempts in the log", || async {
        let (_, page) = api.get(&path).await;
        (page["attempts"].as_array().map(Vec::len) == Some(3)).then_some(page)
    })
    .await;
    let attempts = page["attempts"].as_array().expect("attempts");
    let summary: Vec<(u64, &str, u64)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap_or(0),
                a["outcome"].as_str().unwrap_or(""),
                a["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "retry", 500), (2, "retry", 500), (3, "delivered", 200)]
    );
    assert!(
        attempts
            .iter()
            .all(|a| a["message_id"] == attempts[0]["message_id"] && a["event_id"] == "evt-log")
    );
    assert_eq!(attempts[2]["response_excerpt"], "ok");

    let (_, first) = api.get(&format!("{path}?limit=2")).await;
    assert_eq!(first["attempts"].as_array().map(Vec::len), Some(2));
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, second) = api.get(&format!("{path}?limit=2&cursor={cursor}")).await;
    assert_eq!(second["attempts"][0]["attempt"], 3);
    assert_eq!(second["next_cursor"], Value::Null);
    let (_, delivered) = api.get(&format!("{path}?outcome=delivered")).await;
    assert_eq!(delivered["attempts"].as_array().map(Vec::len), Some(1));
    let (_, future) = api.get(&format!("{path}?since=2999-01-01T00:00:00Z")).await;
    assert_eq!(future["attempts"], json!([]));
    let (status, body) = api.get(&format!("{path}?cursor=zz")).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_cursor"));
    let (status, body) = api.get(&format!("{path}?since=yesterday")).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_time"));
    h.finish().await;
}

/// Declares a queue with a delivery limit of 1 that dead-letters to the namespace's dead
/// queue, and redelivers one message on it until the broker gives up: a real crash loop.
async fn crash_loop(h: &Harness) {
    let ns = h.namespace();
    let channel = h
        .broker
        .connection()
        .create_channel()
        .await
        .expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(1));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(format!("{ns}.dlx").into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("dead".into()),
    );
    let queue = format!("{ns}.crashloop");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("declare the crash-loop queue");
    // Through amq.direct, so that hookwire's own events queue does not get the message,
    // while x-death still records the event type as its routing key.
    channel
        .queue_bind(
            queue.as_str().into(),
            "amq.direct".into(),
            "report_created".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let event = hookwire_amqp::OutgoingEvent {
        org: "acme".into(),
        event_type: "report_created".into(),
        id: "evt-crash".into(),
        data: serde_json::from_value(json!({"report_run_url": "https://mode.test/crash"}))
            .expect("map"),
    };
    let (body, properties) = h.producer.encode(&event).expect("encode");
    let publisher = hookwire_amqp::Publisher::open(h.broker.connection(), Duration::from_secs(10))
        .await
        .expect("publisher");
    publisher
        .publish("amq.direct", "report_created", &body, properties)
        .await
        .expect("published");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for _ in 0..2 {
        let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(5), consumer.next()).await
        else {
            break;
        };
        delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .expect("nack");
    }
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .expect("delete the crash-loop queue");
}

#[tokio::test]
async fn every_kind_of_dead_letter_is_archived_and_replay_delivers_them() {
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_millis(500)]).await;
    let api = Api::new(&h);
    let fixed = Arc::new(AtomicBool::new(false));
    let failing = Receiver::until_fixed(500, &fixed).await;
    let picky = Receiver::until_fixed(400, &fixed).await;
    let exhausted_id = create(&api, &failing.url()).await;
    create(&api, &picky.url()).await;
    h.publish_report("evt-dead", "https://mode.test/dead").await;
    h.publish_orgless().await;
    crash_loop(&h).await;

    // The fourth, without an organization, is the operators'.
    let list = dead_letters(&api, 3).await;
    let mut reasons: Vec<&str> = list["dead_letters"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["delivery_limit", "exhausted", "permanent_status"]);
    let (_, admin) = api.get("/v1/admin/dead-letters").await;
    assert_eq!(admin["dead_letters"][0]["reason"], "missing_org");
    let (_, by_webhook) = api
        .get(&format!("{DEAD_LETTERS}?webhook_id={exhausted_id}"))
        .await;
    assert_eq!(by_webhook["dead_letters"][0]["reason"], "exhausted");

    // The receivers are fixed: replay everything of acme.
    fixed.store(true, Ordering::SeqCst);
    replay_all(&api, 3).await;
    // The two failed deliveries arrive with a fresh budget; the crash-looped event fans
    // out again, to both webhooks.
    eventually(WAIT, "the replays delivered", || async {
        let ok = |r: &Receiver| r.requests().len();
        (ok(&failing) >= 4 && ok(&picky) >= 3).then_some(())
    })
    .await;
    let (_, after) = api.get(DEAD_LETTERS).await;
    assert_eq!(
        after["dead_letters"],
        json!([]),
        "replayed dead letters leave the archive"
    );
    // The attempt log is written in batches, a moment after the delivery.
    let delivered_attempts =
        format!("/v1/orgs/acme/webhooks/{exhausted_id}/attempts?outcome=delivered");
    eventually(WAIT, "replayed outcomes in the attempt log", || async {
        let (_, attempts) = api.get(&delivered_attempts).await;
        attempts["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(())
    })
    .await;

    let (status, body) = api.post(&format!("{DEAD_LETTERS}/replay"), json!({})).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_selection"));
    h.finish().await;
}

#[tokio::test]
async fn purge_by_id_and_by_age() {
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_millis(500)]).await;
    let api = Api::new(&h);
    let gone = Receiver::start(|_, _| Reply::status(404)).await;
    create(&api, &gone.url()).await;
    for i in 0..3 {
        h.publish_report(&format!("evt-{i}"), &format!("https://mode.test/{i}"))
            .await;
    }
    let list = dead_letters(&api, 3).await;
    assert_eq!(list["next_cursor"], json!(null), "one page holds them");
    // Two pages of at most two: the cursor continues where the first page ended.
    let (_, page) = api.get(&format!("{DEAD_LETTERS}?limit=2")).await;
    assert_eq!(
        page["dead_letters"],
        json!(list["dead_letters"].as_array().expect("list")[..2])
    );
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, rest) = api
        .get(&format!("{DEAD_LETTERS}?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["dead_letters"], json!([list["dead_letters"][2]]));
    assert_eq!(rest["next_cursor"], json!(null));
    for (query, code) in [
        ("cursor=nope", "invalid_cursor"),
        ("limit=0", "invalid_query"),
        ("limit=501", "invalid_query"),
    ] {
        let (status, body) = api.get(&format!("{DEAD_LETTERS}?{query}")).await;
        assert_eq!((status, error_code(&body)), (400, code), "{query}: {body}");
    }
    let first = list["dead_letters"][0]["id"].clone();
    let purge = format!("{DEAD_LETTERS}/purge");
    let (_, purged) = api
        .post(
            "/v1/orgs/globex/dead-letters/purge",
            json!({"ids": [first]}),
        )
        .await;
    assert_eq!(purged["purged"], 0, "another org cannot purge them");
    let (_, purged) = api.post(&purge, json!({"ids": [first]})).await;
    assert_eq!(purged["purged"], 1);
    let (_, purged) = api
        .post(&purge, json!({"before": "2999-01-01T00:00:00Z"}))
        .await;
    assert_eq!(purged["purged"], 2);
    let (_, list) = api.get(DEAD_LETTERS).await;
    assert_eq!(list["dead_letters"], json!([]));
    h.finish().await;
}

#[tokio::test]
async fn metrics_move_as_deliveries_happen() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    create(&api, &receiver.url()).await;
    let delivered = r#"hookwire_deliveries_total{outcome="delivered"}"#;
    let consumed =
        r#"hookwire_events_consumed_total{event_type="report_created",result="accepted"}"#;
    let before = h.metrics().await;
    for i in 0..3 {
        h.publish_report(&format!("m-{i}"), "https://mode.test/m")
            .await;
    }
    receiver.wait_for(3, WAIT).await;
    let after = eventually(WAIT, "the counters to move", || async {
        let after = h.metrics().await;
        (sample(&after, delivered) >= sample(&before, delivered) + 3.0).then_some(after)
    })
    .await;
    assert!(sample(&after, consumed) >= sample(&before, consumed) + 3.0);
    assert!(
        sample(
            &after,
            "hookwire_attempt_duration_seconds_count{outcome=\"delivered\"}"
        ) >= 3.0
    );
    assert!(
        after.contains("hookwire_delivery_lag_seconds_bucket"),
        "end-to-end lag is a histogram"
    );
    assert!(
        after.contains(&format!(
            "hookwire_queue_messages{{queue=\"{}.events\"}}",
            h.namespace()
        )),
        "queue depths are polled"
    );
    h.finish().await;
}

/// A replayed dead letter is delivered in the trace its event was in: the producer's
/// `traceparent` survives the dead queue, the archive and the replay, and with export on
/// the replayed attempt's span is a child of the event's span, like the first attempt's.
#[tokio::test]
async fn a_replayed_dead_letter_carries_its_trace_context() {
    const PRODUCER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const STATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    let collector = Receiver::ok().await;
    let endpoint = format!("http://{}", collector.addr());
    let h = Harness::start(|c| c.tracing.otlp_endpoint = endpoint).await;
    let api = Api::new(&h);
    let fixed = Arc::new(AtomicBool::new(false));
    let picky = Receiver::until_fixed(400, &fixed).await;
    create(&api, &picky.url()).await;
    let producer = TraceParent::from_headers(Some(PRODUCER), Some(STATE)).expect("valid");
    let mut data = serde_json::Map::new();
    data.insert("report_run_url".into(), "https://mode.test/traced".into());
    let event = hookwire_amqp::OutgoingEvent {
        org: "acme".into(),
        event_type: "report_created".into(),
        id: "evt-traced".into(),
        data,
    };
    h.producer
        .publish_in_trace(&event, Some(&producer))
        .await
        .expect("published");
    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead[0].reason, "permanent_status");

    fixed.store(true, Ordering::SeqCst);
    replay_all(&api, 1).await;
    let requests = picky.wait_for(2, WAIT).await;
    let contexts: Vec<SpanContext> = requests
        .iter()
        .map(|r| {
            assert_eq!(r.header("tracestate"), STATE, "{:?}", r.headers);
            SpanContext::parse(r.header("traceparent")).expect("a valid traceparent")
        })
        .collect();
    let producer = producer.context;
    for context in &contexts {
        assert_eq!(context.trace_id, producer.trace_id, "the producer's trace");
    }
    assert_ne!(
        contexts[0].span_id, contexts[1].span_id,
        "an attempt span each"
    );

    // Both attempts' spans hang under the one event span, itself the producer's child.
    let spans = eventually(WAIT, "the event span and both attempt spans", || async {
        let spans: Vec<Value> = collector
            .requests()
            .iter()
            .flat_map(|r| {
                let body: Value = serde_json::from_slice(&r.body).expect("OTLP/JSON");
                body["resourceSpans"][0]["scopeSpans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
                    .collect::<Vec<_>>()
            })
            .filter(|s| s["traceId"] == producer.trace_id_hex())
            .collect();
        (spans.len() >= 3).then_some(spans)
    })
    .await;
    let named =
        |name: &str| -> Vec<&Value> { spans.iter().filter(|s| s["name"] == name).collect() };
    let events = named("hookwire event");
    assert_eq!(events.len(), 1, "{spans:?}");
    assert_eq!(events[0]["parentSpanId"], producer.span_id_hex());
    let attempts = named("hookwire attempt");
    assert_eq!(attempts.len(), 2, "{spans:?}");
    for span in &attempts {
        assert_eq!(span["parentSpanId"], events[0]["spanId"], "{spans:?}");
    }
    // Each request's parent is its attempt's span.
    let mut attempt_ids: Vec<String> = attempts
        .iter()
        .map(|s| s["spanId"].as_str().expect("spanId").to_owned())
        .collect();
    let mut parents: Vec<String> = contexts.iter().map(SpanContext::span_id_hex).collect();
    attempt_ids.sort_unstable();
    parents.sort_unstable();
    assert_eq!(attempt_ids, parents);
    h.finish().await;
}
