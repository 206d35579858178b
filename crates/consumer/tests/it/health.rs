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

/// hookwire disabling a webhook after a 410 never undoes an API update that lands while
/// it disables: its compare-and-swap fails on the changed version and is retried on a
/// fresh read. Each webhook's description is PATCHed in a loop until its 410 has been
/// answered, and once more, so that the last PATCH races the disable; the last
/// description the API acknowledged must survive, and the webhook be disabled.
#[tokio::test]
async fn disabling_after_a_410_never_undoes_an_update_made_meanwhile() {
    const WEBHOOKS: usize = 40;
    let h = Harness::start(|_| {}).await;
    let gone = std::sync::Arc::new(Receiver::start(|_, _| Reply::status(410)).await);
    let subs: Vec<_> = (0..WEBHOOKS)
        .map(|i| {
            let url = format!("{}-{i}", gone.url());
            let sub = new_subscription("acme", &url, &["report_created"]);
            h.subscribe(&sub);
            (sub, format!("/hook-{i}"))
        })
        .collect();
    let client = reqwest::Client::new();
    let updaters: Vec<_> = subs
        .iter()
        .map(|(sub, path)| {
            let url = format!("{}/v1/orgs/acme/webhooks/{}", h.api_url(), sub.id);
            let (client, gone, path) = (client.clone(), gone.clone(), path.clone());
            tokio::spawn(async move {
                let mut acknowledged = None;
                let until = std::time::Instant::now() + WAIT;
                for n in 0.. {
                    let answered = gone.requests().iter().any(|r| r.path == path);
                    let description = format!("update {n}");
                    let response = client
                        .patch(&url)
                        .bearer_auth(hookwire_testkit::harness::API_TOKEN)
                        .header("content-type", "application/json")
                        .body(json!({ "description": description }).to_string())
                        .send()
                        .await
                        .expect("PATCH");
                    // 409: the webhook changed under the PATCH (it was being disabled).
                    if response.status() != 409 {
                        assert_eq!(response.status(), 200);
                        acknowledged = Some(description);
                    }
                    if answered || std::time::Instant::now() > until {
                        break;
                    }
                }
                acknowledged
            })
        })
        .collect();
    h.publish(
        "acme",
        "report_created",
        "evt-gone",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;
    for ((sub, _), updater) in subs.iter().zip(updaters) {
        let acknowledged = updater.await.expect("updater");
        let stored = eventually(WAIT, "disabled by its 410", || async {
            let stored = h.store.get("acme", &sub.id).expect("get").expect("there");
            (!stored.enabled).then_some(stored)
        })
        .await;
        assert_eq!(
            Some(stored.description),
            acknowledged,
            "the last acknowledged update is kept"
        );
    }
    h.finish().await;
}
