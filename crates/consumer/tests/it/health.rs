//! Endpoint health: 410 and long failure disable a webhook, with the reason stored, and
//! the operational events reach the organization's subscribers of them, without cascades.

use std::time::Duration;

use hookwire_testkit::{Harness, Receiver, Reply, eventually, new_subscription};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn bodies(r: &Receiver) -> Vec<Value> {
    r.requests()
        .iter()
        .map(|q| serde_json::from_slice(&q.body).expect("JSON body"))
        .collect()
}

#[tokio::test]
async fn a_410_disables_the_webhook_and_tells_the_org() {
    let h = Harness::start(|_| {}).await;
    let gone = Receiver::start(|_, _| Reply::status(410)).await;
    let watcher = Receiver::ok().await;
    let sub = new_subscription("acme", &gone.url(), &["report_created"]);
    h.subscribe(&sub);
    h.subscribe(&new_subscription(
        "acme",
        &watcher.url(),
        &["webhook_disabled", "delivery_dead_lettered"],
    ));
    h.subscribe(&new_subscription(
        "globex",
        &watcher.url(),
        &["webhook_disabled", "delivery_dead_lettered"],
    ));
    h.publish(
        "acme",
        "report_created",
        "evt-410",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;

    watcher.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = bodies(&watcher);
    got.sort_by_key(|b| b["event"].as_str().unwrap_or_default().to_owned());
    let id = sub.id.to_string();
    assert_eq!(
        got,
        [
            json!({"event": "delivery_dead_lettered", "webhook_id": id, "event_id": "evt-410", "reason": "gone"}),
            json!({"event": "webhook_disabled", "webhook_id": id, "reason": "the receiver answered 410 Gone"}),
        ],
        "exactly these two, and only to acme's subscriber"
    );
    let stored = h.store.get("acme", &sub.id).expect("get").expect("kept");
    assert!(!stored.enabled);
    assert_eq!(
        stored.disabled_reason.as_deref(),
        Some("the receiver answered 410 Gone")
    );
    h.finish().await;
}

#[tokio::test]
async fn a_webhook_that_only_fails_is_disabled_after_disable_after_secs() {
    let h = Harness::start(|c| {
        c.delivery.disable_after = Duration::from_secs(1);
        c.delivery.retry_schedule = vec![Duration::from_millis(500); 8];
    })
    .await;
    let failing = Receiver::start(|_, _| Reply::status(503)).await;
    let watcher = Receiver::ok().await;
    let sub = new_subscription("acme", &failing.url(), &["report_created"]);
    h.subscribe(&sub);
    h.subscribe(&new_subscription(
        "acme",
        &watcher.url(),
        &["webhook_disabled"],
    ));
    h.publish(
        "acme",
        "report_created",
        "evt-sick",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;

    let disabled = eventually(WAIT, "the failing webhook disabled", || async {
        h.store
            .get("acme", &sub.id)
            .expect("get")
            .filter(|s| !s.enabled)
    })
    .await;
    let reason = disabled.disabled_reason.unwrap_or_default();
    assert!(reason.contains("no successful delivery"), "{reason}");
    assert!(
        disabled.consecutive_failures >= 3 && disabled.failing_since_ms.is_some(),
        "health is tracked"
    );
    let notice = watcher.wait_for(1, WAIT).await.remove(0);
    let body: Value = serde_json::from_slice(&notice.body).expect("JSON");
    assert_eq!(body["event"], "webhook_disabled");
    assert_eq!(body["webhook_id"], sub.id.to_string());
    // Its pending retry is dead-lettered as webhook_disabled when it comes due: replayable.
    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead[0].reason, "webhook_disabled");
    h.finish().await;
}

#[tokio::test]
async fn a_failed_operational_delivery_never_produces_another() {
    let h = Harness::start(|_| {}).await;
    let refusing = Receiver::start(|_, _| Reply::status(400)).await;
    h.subscribe(&new_subscription(
        "acme",
        &refusing.url(),
        &["report_created", "delivery_dead_lettered"],
    ));
    h.publish(
        "acme",
        "report_created",
        "evt-cascade",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;

    // The report fails (1), its delivery_dead_lettered fails too (2), and that's all.
    let dead = h.wait_dead_letters(2, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(refusing.requests().len(), 2, "{:?}", bodies(&refusing));
    assert_eq!(h.dead_letters().len(), 2, "{dead:?}");
    h.finish().await;
}
