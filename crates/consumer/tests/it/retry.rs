//! Failures: retries held by the broker's tier queues, Retry-After, permanent failures,
//! 410 and exhaustion, each ending where docs/delivery-semantics.md says.

use std::time::Duration;

use hookwire_testkit::{Broker, Harness, Receiver, Reply, eventually, new_subscription};

const WAIT: Duration = Duration::from_secs(30);

/// Waits until the retry tier `tier` (`2s`, …) holds `n` ready messages.
async fn tier_holds(h: &Harness, tier: &str, n: u32, within: Duration) {
    let queue = format!("{}.retry.{tier}", h.namespace());
    eventually(within, &format!("{n} in the {tier} tier"), || async {
        (h.broker.ready(&queue).await == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn retries_wait_in_the_broker_and_keep_the_webhook_id() {
    let h = Harness::start(|c| {
        c.delivery.retry_schedule = vec![Duration::from_secs(2), Duration::from_secs(2)]
    })
    .await;
    let receiver = Receiver::start(|n, _| Reply::status(if n < 2 { 500 } else { 200 })).await;
    h.subscribe_acme(&receiver.url());
    h.publish_report("evt-retry", "https://mode.test/r/1").await;

    receiver.wait_for(1, WAIT).await;
    // While it waits, the delivery is a message in the 2s tier and nothing is unacked.
    tier_holds(&h, "2s", 1, Duration::from_secs(2)).await;
    assert_eq!(
        Broker::unacked(&format!("{}.events", h.namespace())),
        0,
        "the event was acked once the retry was confirmed"
    );

    let got = receiver.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 3, "exactly three attempts");
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one webhook-id across retries: {ids:?}"
    );
    let stamps: Vec<u64> = got
        .iter()
        .map(|r| r.header("webhook-timestamp").parse().expect("ts"))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[1] > w[0]),
        "signed at attempt time: {stamps:?}"
    );
    assert!(got.iter().all(|r| r.body == got[0].body));
    assert!(h.dead_letters().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn retry_after_picks_the_smallest_covering_tier() {
    let h = Harness::start(|c| {
        c.delivery.retry_schedule = vec![Duration::from_secs(1), Duration::from_secs(5)]
    })
    .await;
    let receiver = Receiver::start(|_, _| {
        let mut reply = Reply::status(503);
        reply.headers.push(("retry-after".into(), "3".into()));
        reply
    })
    .await;
    h.subscribe_acme(&receiver.url());
    h.publish_report("evt-ra", "https://mode.test/r/2").await;
    receiver.wait_for(1, WAIT).await;
    tier_holds(&h, "5s", 1, Duration::from_secs(3)).await;
    assert_eq!(
        h.broker.ready(&format!("{}.retry.1s", h.namespace())).await,
        0,
        "Retry-After 3 skips the 1s tier"
    );
    h.finish().await;
}

#[tokio::test]
async fn exhaustion_permanent_status_and_gone_are_dead_lettered_with_their_reason() {
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_millis(500)]).await;
    let failing = Receiver::start(|_, _| Reply::status(500)).await;
    let not_found = Receiver::start(|_, _| Reply::status(404)).await;
    let gone = Receiver::start(|_, _| Reply::status(410)).await;
    let (s_fail, s_404, s_410) = (
        new_subscription("acme", &failing.url(), &["report_created"]),
        new_subscription("acme", &not_found.url(), &["report_created"]),
        new_subscription("acme", &gone.url(), &["report_created"]),
    );
    for s in [&s_fail, &s_404, &s_410] {
        h.subscribe(s);
    }
    h.publish_report("evt-dead", "https://mode.test/r/3").await;

    let dead = h.wait_dead_letters(3, WAIT).await;
    let reason_for = |url: &str, sub: &hookwire_core::Subscription| {
        dead.iter()
            .find(|d| d.subscription_id == Some(sub.id))
            .map(|d| (d.reason.clone(), d.detail.clone()))
            .unwrap_or_else(|| panic!("no dead letter for {url}: {dead:?}"))
    };
    let (reason, detail) = reason_for("500", &s_fail);
    assert_eq!(reason, "exhausted");
    assert!(
        detail.contains("2 attempts") && detail.contains("500"),
        "{detail}"
    );
    assert_eq!(failing.requests().len(), 2, "one attempt plus one retry");
    assert_eq!(reason_for("404", &s_404).0, "permanent_status");
    assert_eq!(not_found.requests().len(), 1, "a 404 is not retried");
    assert_eq!(reason_for("410", &s_410).0, "gone");
    assert!(dead.iter().all(
        |d| d.body == br#"{"event":"report_created","report_run_url":"https://mode.test/r/3"}"#
    ));
    let disabled = h.store.get("acme", &s_410.id).expect("get").expect("kept");
    assert!(!disabled.enabled, "410 disables the webhook");
    assert!(disabled.disabled_reason.unwrap_or_default().contains("410"));
    h.finish().await;
}

#[tokio::test]
async fn a_webhook_disabled_or_deleted_while_its_retry_waits() {
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_secs(1)]).await;
    let receiver = Receiver::start(|_, _| Reply::status(503)).await;
    let to_disable = new_subscription("acme", &receiver.url(), &["report_created"]);
    let to_delete = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&to_disable);
    h.subscribe(&to_delete);
    h.publish_report("evt-dis", "https://mode.test/r/4").await;
    receiver.wait_for(2, WAIT).await;
    let mut disabled = to_disable.clone();
    disabled.enabled = false;
    h.store
        .apply(hookwire_store::Change::Upsert(disabled))
        .expect("disable");
    h.store
        .apply(hookwire_store::Change::Delete {
            org: "acme".into(),
            id: to_delete.id,
        })
        .expect("delete");

    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(
        dead.len(),
        1,
        "the deleted webhook's retry is dropped: {dead:?}"
    );
    assert_eq!(dead[0].reason, "webhook_disabled");
    // The retry tier is empty again: both retries came due and were handled.
    tier_holds(&h, "1s", 0, WAIT).await;
    assert_eq!(
        receiver.requests().len(),
        2,
        "no attempt after disable or delete"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_receiver_that_is_not_listening_is_retried() {
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_millis(500)]).await;
    // Bind, note the port, close: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sub = new_subscription(
        "acme",
        &format!("http://127.0.0.1:{port}/hook"),
        &["report_created"],
    );
    h.subscribe(&sub);
    h.publish_report("evt-refused", "https://mode.test/r/5")
        .await;
    let dead = h.wait_dead_letter("exhausted", WAIT).await;
    assert!(dead.detail.contains("2 attempts"), "{}", dead.detail);
    h.finish().await;
}
