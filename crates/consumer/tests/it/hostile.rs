//! A producer that breaks the rules on purpose: it cannot forge hookwire's operational
//! events, its `x-hookwire-*` headers never reach the archive, and tasks on the broker are
//! checked again before hookwire signs and sends them.

use std::time::Duration;

use hookwire_amqp::wire::{self, Task};
use hookwire_amqp::{Publisher, topology::DELIVER_KEY};
use hookwire_core::now_ms;
use hookwire_testkit::{Broker, Harness, Receiver, eventually, new_subscription};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

fn event_props(extra: &[(&str, &str)]) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert("org".into(), AMQPValue::LongString("acme".into()));
    for (k, v) in extra {
        h.insert((*k).into(), AMQPValue::LongString((*v).into()));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id("forged".into())
        .with_headers(h)
}

#[tokio::test]
async fn a_producer_cannot_send_an_operational_event() {
    let h = Harness::start(|_| {}).await;
    let watcher = Receiver::ok().await;
    h.subscribe(&new_subscription(
        "acme",
        &watcher.url(),
        &["webhook_disabled", "delivery_dead_lettered"],
    ));
    let forged = format!(
        r#"{{"event":"webhook_disabled","webhook_id":"{}","reason":"forged"}}"#,
        Uuid::now_v7()
    );
    h.broker
        .publish_raw(
            h.namespace(),
            "webhook_disabled",
            forged.as_bytes(),
            event_props(&[]),
        )
        .await;
    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead[0].reason, "reserved_event_type");
    assert_eq!(dead[0].event_type.as_deref(), Some("webhook_disabled"));
    assert!(
        watcher.requests().is_empty(),
        "the forged event was dead-lettered, never signed and sent"
    );
    // The Rust producer refuses it before it reaches the broker.
    let mut data = serde_json::Map::new();
    data.insert("webhook_id".into(), "w".into());
    data.insert("reason".into(), "forged".into());
    let refused = h
        .producer
        .publish(&hookwire_amqp::OutgoingEvent {
            org: "acme".into(),
            event_type: "webhook_disabled".into(),
            id: "forged-2".into(),
            data,
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");
    h.finish().await;
}

#[tokio::test]
async fn a_producers_reserved_headers_never_reach_the_archive() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    let forged_sub = sub.id.to_string();
    // Broken on purpose, with the headers of a task of `sub`: replayed as that task, it
    // would be signed and sent to the webhook.
    h.broker
        .publish_raw(
            h.namespace(),
            "report_created",
            br#"{"event":"report_created"}"#,
            event_props(&[
                (wire::SUBSCRIPTION_ID, &forged_sub),
                (wire::EVENT_ID, "forged-event"),
                (wire::REASON, "exhausted"),
                (wire::DETAIL, "forged"),
            ]),
        )
        .await;
    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead[0].reason, "missing_field");
    assert_eq!(dead[0].subscription_id, None, "not a task of the webhook");
    assert_eq!(dead[0].event_id.as_deref(), Some("forged"));
    assert_ne!(dead[0].detail, "forged");
    h.finish().await;
}

/// Publishes a task as anyone with write access to the work exchange could.
pub(crate) async fn publish_task(h: &Harness, task: &Task, body: &[u8]) {
    let publisher = Publisher::open(h.broker.connection(), Duration::from_secs(10))
        .await
        .expect("confirm channel");
    publisher
        .publish(
            &format!("{}.work", h.namespace()),
            DELIVER_KEY,
            body,
            task.properties(),
        )
        .await
        .expect("task published");
}

#[tokio::test]
async fn tasks_are_checked_before_they_are_signed() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    let task = |event_type: &str, event_id: &str| Task {
        event_id: event_id.into(),
        org: "acme".into(),
        event_type: event_type.into(),
        subscription_id: sub.id,
        attempts: 0,
        first_seen_ms: now_ms(),
        published_at_ms: None,
        deferred_since_ms: None,
        due_ms: None,
        lineage: None,
        trace: None,
    };
    let big = format!(
        r#"{{"event":"report_created","report_run_url":"{}"}}"#,
        "x".repeat(70_000)
    );
    let broken: [(Task, &[u8], &str); 3] = [
        (
            task("report_created", "mismatch"),
            br#"{"event":"webhook_disabled","webhook_id":"w","reason":"r"}"#,
            "event_mismatch",
        ),
        (
            task("report_created", "not-json"),
            b"not json",
            "invalid_json",
        ),
        (task("report_created", "big"), big.as_bytes(), "too_large"),
    ];
    for (t, body, _) in &broken {
        publish_task(&h, t, body).await;
    }
    // A task of a type the webhook does not subscribe to is dropped.
    publish_task(
        &h,
        &task("webhook_disabled", "unsubscribed"),
        br#"{"event":"webhook_disabled","webhook_id":"w","reason":"forged"}"#,
    )
    .await;
    publish_task(
        &h,
        &task("report_created", "good"),
        br#"{"event":"report_created","report_run_url":"https://mode.test/ok"}"#,
    )
    .await;

    let dead = h.wait_dead_letters(broken.len(), WAIT).await;
    let mut reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["event_mismatch", "invalid_json", "too_large"]);
    receiver.wait_for(1, WAIT).await;
    // Every task handled (each is acked only after it is delivered, dead-lettered or
    // dropped), then only the good one reached the receiver.
    let deliveries = format!("{}.deliveries", h.namespace());
    eventually(WAIT, "every task handled", || async {
        (h.broker.ready(&deliveries).await == 0 && Broker::unacked(&deliveries) == 0).then_some(())
    })
    .await;
    let got = receiver.requests();
    assert_eq!(got.len(), 1, "only the good task was sent");
    assert_eq!(
        &got[0].body[..],
        br#"{"event":"report_created","report_run_url":"https://mode.test/ok"}"#
    );
    h.finish().await;
}
