//! Messages that break the wire contract end in the dead queue with their reason, and
//! the consumer keeps going.

use std::time::Duration;

use hookwire_testkit::{Harness, Receiver, new_subscription};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

const WAIT: Duration = Duration::from_secs(20);

fn props(org: Option<AMQPValue>) -> BasicProperties {
    let mut h = FieldTable::default();
    if let Some(org) = org {
        h.insert("org".into(), org);
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id("broken".into())
        .with_headers(h)
}

fn org() -> Option<AMQPValue> {
    Some(AMQPValue::LongString("acme".into()))
}

#[tokio::test]
async fn every_contract_breach_is_dead_lettered_with_its_reason() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    h.subscribe(&new_subscription(
        "acme",
        &receiver.url(),
        &["report_created"],
    ));
    let big = format!(
        r#"{{"event":"report_created","report_run_url":"{}"}}"#,
        "x".repeat(70_000)
    );
    let cases: Vec<(&str, Vec<u8>, Option<AMQPValue>, &str)> = vec![
        (
            "report_created",
            b"not json".to_vec(),
            org(),
            "invalid_json",
        ),
        (
            "report_created",
            br#"{"event":"report_created","report_run_url":"u"}"#.to_vec(),
            None,
            "missing_org",
        ),
        (
            "report_created",
            br#"{"event":"report_created","report_run_url":"u"}"#.to_vec(),
            Some(AMQPValue::LongLongInt(7)),
            "missing_org",
        ),
        (
            "no_such_event",
            br#"{"event":"no_such_event"}"#.to_vec(),
            org(),
            "unknown_event",
        ),
        (
            "report_created",
            br#"{"event":"report_created"}"#.to_vec(),
            org(),
            "missing_field",
        ),
        (
            "report_created",
            br#"{"event":"definition_created","report_run_url":"u"}"#.to_vec(),
            org(),
            "event_mismatch",
        ),
        ("report_created", big.into_bytes(), org(), "too_large"),
    ];
    for (key, body, org, _) in &cases {
        h.broker
            .publish_raw(h.namespace(), key, body, props(org.clone()))
            .await;
    }
    // The consumer keeps going: a good event after the broken ones is delivered.
    h.publish(
        "acme",
        "report_created",
        "good-after-bad",
        "report_run_url",
        "https://mode.test/ok",
    )
    .await;
    receiver.wait_for(1, WAIT).await;

    let dead = h.wait_dead_letters(cases.len(), WAIT).await;
    let mut reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    let mut expected: Vec<&str> = cases.iter().map(|c| c.3).collect();
    reasons.sort_unstable();
    expected.sort_unstable();
    assert_eq!(reasons, expected);
    for d in &dead {
        assert!(!d.detail.is_empty(), "every dead letter explains itself");
        let case = cases
            .iter()
            .find(|c| c.1 == d.body)
            .expect("body kept byte for byte");
        assert_eq!(d.event_type.as_deref(), Some(case.0));
        let expected_org = if case.2 == org() { Some("acme") } else { None };
        assert_eq!(
            d.org.as_deref(),
            expected_org,
            "archived under its org, or none"
        );
    }
    assert_eq!(receiver.requests().len(), 1, "nothing broken was delivered");
    assert_eq!(
        hookwire_testkit::Broker::unacked(&format!("{}.events", h.namespace())),
        0,
        "nothing crash-loops"
    );
    h.finish().await;
}

#[tokio::test]
async fn dead_letters_beyond_the_retention_are_pruned() {
    let mut h = Harness::start(|_| {}).await;
    for i in 0..3 {
        let body = format!("not json {i}");
        h.broker
            .publish_raw(
                h.namespace(),
                "report_created",
                body.as_bytes(),
                props(org()),
            )
            .await;
        // One at a time, so that the archive order is the publish order.
        h.wait_dead_letters(i + 1, WAIT).await;
    }
    // Retention is applied when the daemon starts, and every minute after.
    h.stop_daemon().await.expect("daemon stops");
    h.config.store.dead_letters_per_org = 2;
    h.restart_daemon().await;
    let kept = hookwire_testkit::eventually(WAIT, "the oldest letter pruned", || async {
        let all = h.dead_letters();
        (all.len() == 2).then_some(all)
    })
    .await;
    let bodies: Vec<&[u8]> = kept.iter().map(|d| d.body.as_slice()).collect();
    assert_eq!(
        bodies,
        [&b"not json 1"[..], b"not json 2"],
        "the newest two stay"
    );
    h.finish().await;
}
