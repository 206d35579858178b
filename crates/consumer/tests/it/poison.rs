//! A message that can never be handled is settled on its own: dead-lettered with its
//! reason at once, while the session, and every other message, goes on undisturbed.

use std::time::Duration;

use hookwire_amqp::wire::Task;
use hookwire_core::now_ms;
use hookwire_store::{Change, Store};
use hookwire_testkit::{Broker, Harness, Receiver, eventually, new_subscription, test_config};

use crate::hostile::publish_task;

const WAIT: Duration = Duration::from_secs(20);

/// A store whose event index for org `poisoned` is damaged on disk (an entry whose id is
/// cut short), so that resolving its subscribers fails. (A damaged webhook record costs
/// only that webhook: `broken_row.rs`.)
fn store_with_a_damaged_index(dir: &std::path::Path, url: &str) {
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
    let index = db.open_tree("subscriptions_by_event").expect("tree");
    let (key, _) = index.iter().next().expect("one entry").expect("read");
    index.remove(&key).expect("remove");
    index
        .insert(&key[..key.len() - 1], &[] as &[u8])
        .expect("insert");
    db.flush().expect("flush");
}

#[tokio::test]
async fn an_unprocessable_event_is_dead_lettered_alone_and_the_rest_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let poisoned_receiver = Receiver::ok().await;
    store_with_a_damaged_index(dir.path(), &poisoned_receiver.url());
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
    assert!(dead[0].detail.contains("corrupt"), "{}", dead[0].detail);

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

/// A forged task claiming `u32::MAX` attempts (no room for one more) is refused where it
/// is decoded, settled at once as a contract breach with no attempt, instead of
/// overflowing the attempt count; the other messages flow.
#[tokio::test]
async fn a_task_claiming_every_attempt_is_refused_at_decode_and_nothing_is_lost() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    let forged = Task {
        event_id: "forged".into(),
        org: "acme".into(),
        event_type: "report_created".into(),
        subscription_id: sub.id,
        attempts: u32::MAX,
        first_seen_ms: now_ms(),
        published_at_ms: None,
        deferred_since_ms: None,
        due_ms: None,
        lineage: None,
        trace: None,
    };
    publish_task(
        &h,
        &forged,
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
    assert_eq!(dead[0].reason, "missing_field");
    assert!(
        dead[0].detail.contains("x-hookwire-attempts"),
        "{}",
        dead[0].detail
    );
    assert_eq!(dead[0].event_id.as_deref(), Some("forged"));
    receiver.wait_for(HEALTHY, WAIT).await;
    let deliveries = format!("{}.deliveries", h.namespace());
    eventually(WAIT, "the forged task acked", || async {
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
    assert_eq!(
        ids.len(),
        HEALTHY,
        "each delivered once, the forged task never attempted"
    );
    assert_eq!(receiver.requests().len(), HEALTHY);
    h.finish().await;
}
