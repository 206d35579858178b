//! A stored webhook whose record cannot be used costs only its own deliveries: its
//! organization's other webhooks still receive every event, and the API shows the broken
//! one with its reason and deletes it.

use std::time::Duration;

use hookwire_store::{Change, Store};
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver, new_subscription, test_config};

const WAIT: Duration = Duration::from_secs(20);

/// A store at `dir` holding `good` and `bad`, `bad`'s signing secret damaged on disk.
fn store_with_a_broken_row(
    dir: &std::path::Path,
    good: &hookwire_core::Subscription,
    bad: &hookwire_core::Subscription,
) {
    let key = test_config("unused", dir).secrets_key().expect("key");
    {
        let store = Store::open(dir, 1 << 20, &key).expect("store opens");
        store.apply(Change::Upsert(good.clone())).expect("apply");
        store.apply(Change::Upsert(bad.clone())).expect("apply");
        store.flush().expect("flush");
    }
    let db = reopen(dir);
    let tree = db.open_tree("subscriptions").expect("tree");
    let mut key = b"acme\0".to_vec();
    key.extend_from_slice(bad.id.as_bytes());
    let raw = tree.get(&key).expect("get").expect("stored");
    let mut record: serde_json::Value = serde_json::from_slice(&raw).expect("record");
    let sealed = record["keys"][0]["sealed"]
        .as_str()
        .expect("sealed")
        .to_owned();
    let flipped = if sealed.starts_with('A') { "B" } else { "A" };
    record["keys"][0]["sealed"] = format!("{flipped}{}", &sealed[1..]).into();
    tree.insert(key, serde_json::to_vec(&record).expect("json"))
        .expect("insert");
    db.flush().expect("flush");
}

/// Opens the sled directory once the store's background threads have let go of it.
fn reopen(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("sled opens: {e}"),
        }
    }
}

#[tokio::test]
async fn a_broken_webhook_costs_only_its_own_deliveries() {
    let good_receiver = Receiver::ok().await;
    let bad_receiver = Receiver::ok().await;
    let good = new_subscription("acme", &good_receiver.url(), &["report_created"]);
    let bad = new_subscription("acme", &bad_receiver.url(), &["report_created"]);
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_a_broken_row(dir.path(), &good, &bad);
    let path = dir.path().to_owned();
    let h = Harness::start(move |c| c.store.path = path).await;

    for i in 0..3 {
        h.publish_report(&format!("evt-{i}"), "https://mode.test/r")
            .await;
    }
    good_receiver.wait_for(3, WAIT).await;
    assert!(
        h.dead_letters().is_empty(),
        "nothing was dead-lettered for the sound webhook: {:?}",
        h.dead_letters()
    );
    assert_eq!(
        bad_receiver.requests().len(),
        0,
        "the broken one gets nothing"
    );

    let client = reqwest::Client::new();
    let url = |id: &uuid::Uuid| format!("{}/v1/orgs/acme/webhooks/{id}", h.api_url());
    let shown: serde_json::Value = client
        .get(url(&bad.id))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(
        shown["broken_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "the API names why: {shown}"
    );
    assert_eq!(shown["enabled"], false);
    let list: serde_json::Value = client
        .get(format!("{}/v1/orgs/acme/webhooks", h.api_url()))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["webhooks"].as_array().map(Vec::len), Some(2), "{list}");
    let patch = client
        .patch(url(&bad.id))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"enabled": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(patch.status(), 409, "a broken webhook is not changed");
    let body: serde_json::Value = patch.json().await.expect("json");
    assert_eq!(body["error"]["code"], "webhook_broken", "{body}");
    let deleted = client
        .delete(url(&bad.id))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204, "and it can be deleted");
    let gone = client
        .get(url(&bad.id))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), 404);
    h.finish().await;
}
