//! A message that can never be handled is settled on its own: dead-lettered with its
//! reason at once, while the session, and every other message, goes on undisturbed.

use std::time::Duration;

use hookwire_amqp::wire::Task;
use hookwire_core::now_ms;
use hookwire_store::{Change, Store};
use hookwire_testkit::{Broker, Harness, Receiver, eventually, new_subscription, test_config};

use crate::hostile::publish_task;

const WAIT: Duration = Duration::from_secs(20);

/// A store whose one webhook of org `poisoned` has a secret that no key opens (its sealed
/// bytes overwritten on disk), as a damaged record would.
fn store_with_an_unreadable_webhook(dir: &std::path::Path, url: &str) {
    let key = test_config("unused", dir).secrets_key().expect("test key");
    {
        let store = Store::open(dir, 1 << 20, &key).expect("store opens");
        let sub = new_subscription("poisoned", url, &["report_created"]);
        store.apply(Change::Upsert(sub)).expect("apply");
        store.flush().expect("flush");
    }
    // A dropped store's background threads release sled's lock a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("could not acquire lock"), "{e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("sled: {e}"),
        }
    };
    let subs = db.open_tree("subscriptions").expect("tree");
    let (k, v) = subs.iter().next().expect("one record").expect("read");
    let mut record: serde_json::Value = serde_json::from_slice(&v).expect("json");
    record["keys"][0]["sealed"] = "A".repeat(96).into();
    subs.insert(k, serde_json::to_vec(&record).expect("json"))
        .expect("insert");
    db.flush().expect("flush");
}

#[tokio::test]
async fn an_unprocessable_event_is_dead_lettered_alone_and_the_rest_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let poisoned_receiver = Receiver::ok().await;
    store_with_an_unreadable_webhook(dir.path(), &poisoned_receiver.url());
    let h = Harness::start(|c| c.store.path = dir.path().to_owned()).await;
    let receiver = Receiver::ok().await;
    h.subscribe(&new_subscription(
        "healthy",
        &receiver.url(),
        &["report_created"],
    ));
    let publish = |org: &'static str, id: String| {
        let h = &h;
        async move {
            h.publish(
                org,
                "report_created",
                &id,
                "report_run_url",
                "https://mode.test/r",
            )
            .await;
        }
    };
    publish("poisoned", "poison-1".into()).await;
    for i in 0..10 {
        publish("healthy", format!("healthy-{i}")).await;
    }

    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].reason, "unprocessable",
        "dead-lettered by hookwire with its reason, not by the broker after a crash loop"
    );
    assert_eq!(dead[0].event_id.as_deref(), Some("poison-1"));
    assert_eq!(dead[0].org.as_deref(), Some("poisoned"));
    assert_eq!(dead[0].event_type.as_deref(), Some("report_created"));
    assert!(dead[0].detail.contains("secrets.key"), "{}", dead[0].detail);

    let got = receiver.wait_for(10, WAIT).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "every healthy event delivered");
    assert_eq!(
        receiver.requests().len(),
        10,
        "no healthy event was handed back and delivered twice"
    );
    assert!(poisoned_receiver.requests().is_empty());
    assert_eq!(
        hookwire_testkit::Broker::unacked(&format!("{}.events", h.namespace())),
        0
    );
    h.finish().await;
}

/// A handler that panics settles its message at once, as unprocessable, instead of
/// leaving it unacked until the broker's 30-minute consumer timeout; the other messages
/// flow. The panic is a real one, with no hook: a forged task claiming `u32::MAX`
/// attempts overflows the attempt count after its attempt: every hookwire build checks
/// overflow, release ones included (the workspace's `profile.release`).
#[tokio::test]
async fn a_panicking_handler_settles_its_message_at_once_and_nothing_is_lost() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    let panicking = Task {
        event_id: "panics".into(),
        org: "acme".into(),
        event_type: "report_created".into(),
        subscription_id: sub.id,
        attempts: u32::MAX,
        first_seen_ms: now_ms(),
        published_at_ms: None,
        deferred_since_ms: None,
        due_ms: None,
        trace: None,
    };
    publish_task(
        &h,
        &panicking,
        br#"{"event":"report_created","report_run_url":"https://mode.test/p"}"#,
    )
    .await;
    const HEALTHY: usize = 10;
    for i in 0..HEALTHY {
        h.publish(
            "acme",
            "report_created",
            &format!("healthy-{i}"),
            "report_run_url",
            "https://mode.test/r",
        )
        .await;
    }
    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "unprocessable");
    assert!(dead[0].detail.contains("panicked"), "{}", dead[0].detail);
    assert_eq!(dead[0].event_id.as_deref(), Some("panics"));
    // Every healthy event delivered, and the panicking task's one attempt.
    receiver.wait_for(HEALTHY + 1, WAIT).await;
    // Settled, not left unacked: far sooner than the broker's consumer timeout.
    let deliveries = format!("{}.deliveries", h.namespace());
    eventually(WAIT, "the panicking task acked", || async {
        (h.broker.ready(&deliveries).await == 0 && Broker::unacked(&deliveries) == 0).then_some(())
    })
    .await;
    let mut ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), HEALTHY + 1, "each delivered once, nothing lost");
    h.finish().await;
}
