//! Compare-and-swap writes of subscriptions (`Change::Replace`) and the secret-free listing.

use hookwire_core::Subscription;
use hookwire_store::{Change, Error, Result, Store};
use uuid::Uuid;

use super::{open, sub};

/// A fresh store (in the directory returned with it) holding one `acme` webhook on
/// `report_created`: the webhook as written, and as read back.
fn one_webhook() -> (tempfile::TempDir, Store, Subscription, Subscription) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let s = sub("acme", &["report_created"]);
    store.apply(Change::Upsert(s.clone())).expect("create");
    let read = stored(&store, &s.id);
    (dir, store, s, read)
}

/// Writes `sub` over the stored version `expected_version`, as `PATCH` does.
fn replace(store: &Store, sub: Subscription, expected_version: u64) -> Result<()> {
    store.apply(Change::Replace {
        sub,
        expected_version,
    })
}

/// `acme`'s webhook `id` as stored.
fn stored(store: &Store, id: &Uuid) -> Subscription {
    store.get("acme", id).expect("get").expect("there")
}

/// How many of `acme`'s webhooks the index lists for `event`.
fn subscribers(store: &Store, event: &str) -> usize {
    store.subscribers("acme", event).expect("lookup").len()
}

#[test]
fn replace_writes_only_over_the_version_it_read() {
    let (_dir, store, s, read) = one_webhook();
    assert_eq!(read.version, 0);

    let mut first = read.clone();
    first.description = "first".into();
    replace(&store, first, read.version).expect("the first write over version 0 wins");
    let now = stored(&store, &s.id);
    assert_eq!((now.version, now.description.as_str()), (1, "first"));

    // A second writer that read version 0 too is refused, and changes nothing.
    let mut stale = read.clone();
    stale.description = "stale".into();
    stale.events = vec!["report_run_started".into()];
    let err = replace(&store, stale, read.version).expect_err("a stale write is refused");
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 0,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(stored(&store, &s.id), now);
    assert_eq!(
        subscribers(&store, "report_created"),
        1,
        "the index still matches the stored events"
    );
    assert_eq!(subscribers(&store, "report_run_started"), 0);
}

#[test]
fn replace_never_recreates_a_deleted_subscription() {
    let (_dir, store, s, read) = one_webhook();
    store
        .apply(Change::Delete {
            org: "acme".into(),
            id: s.id,
        })
        .expect("delete");
    let version = read.version;
    let err = replace(&store, read, version).expect_err("a write after a delete is refused");
    assert!(matches!(err, Error::NotFound(id) if id == s.id), "{err}");
    assert_eq!(store.get("acme", &s.id).expect("get"), None);
    assert_eq!(subscribers(&store, "report_created"), 0);
}

#[test]
fn replace_keeps_the_stored_health_and_upsert_bumps_the_version() {
    let (_dir, store, s, read) = one_webhook();
    store
        .apply(Change::RecordHealth {
            org: "acme".into(),
            id: s.id,
            delivered: false,
            at_ms: 5,
        })
        .expect("health");
    let mut disabled = read.clone();
    disabled.enabled = false;
    replace(&store, disabled, read.version).expect("health writes do not bump the version");
    let now = stored(&store, &s.id);
    assert!(!now.enabled);
    assert_eq!(
        (now.consecutive_failures, now.failing_since_ms),
        (1, Some(5))
    );
    store.apply(Change::Upsert(now.clone())).expect("upsert");
    assert_eq!(stored(&store, &s.id).version, now.version + 1);
}

#[test]
fn concurrent_replaces_over_one_version_let_exactly_one_win() {
    let (_dir, store, s, read) = one_webhook();
    let wins: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (store, mut mine) = (store.clone(), read.clone());
                scope.spawn(move || {
                    mine.description = format!("writer {i}");
                    replace(&store, mine, 0).is_ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().expect("no panic")))
            .sum()
    });
    assert_eq!(wins, 1);
    assert_eq!(stored(&store, &s.id).version, 1);
}

#[test]
fn old_records_without_a_version_read_as_version_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = sub("acme", &["report_created"]);
    {
        let store = open(&dir);
        store.apply(Change::Upsert(s.clone())).expect("create");
        store.flush().expect("flush");
    }
    // Rewrite the record as a build without versions wrote it.
    {
        let db = sled::open(dir.path()).expect("sled");
        let tree = db.open_tree("subscriptions").expect("tree");
        let (key, raw) = tree.iter().next().expect("one").expect("read");
        let mut record: serde_json::Value = serde_json::from_slice(&raw).expect("json");
        record.as_object_mut().expect("object").remove("version");
        tree.insert(key, serde_json::to_vec(&record).expect("json"))
            .expect("write");
        db.flush().expect("flush");
    }
    let store = open(&dir);
    let read = stored(&store, &s.id);
    assert_eq!(read.version, 0);
    replace(&store, read, 0).expect("an old record is replaced over version 0");
}

#[test]
fn listing_pages_without_unsealing_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let subs: Vec<_> = (0..5).map(|_| sub("acme", &["report_created"])).collect();
    for s in &subs {
        store.apply(Change::Upsert(s.clone())).expect("create");
    }
    store
        .apply(Change::Upsert(sub("acme2", &["report_created"])))
        .expect("another org");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_page("acme", cursor.as_deref(), 2).expect("page");
        assert!(page.items.len() <= 2);
        assert!(
            page.items.iter().all(|s| s.keys.is_empty()),
            "no secret is unsealed"
        );
        seen.extend(page.items.iter().map(|s| s.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, subs.iter().map(|s| s.id).collect::<Vec<_>>());
    assert_eq!(store.count("acme").expect("count"), 5);
    assert!(matches!(
        store.list_page("acme", Some("nope"), 2),
        Err(Error::InvalidCursor(_))
    ));
}

#[test]
fn create_refuses_one_more_than_the_org_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let create = |s: &hookwire_core::Subscription| {
        store.apply(Change::Create {
            sub: s.clone(),
            max_per_org: 2,
        })
    };
    create(&sub("acme", &["report_created"])).expect("1st");
    create(&sub("acme", &["report_created"])).expect("2nd");
    let err = create(&sub("acme", &["report_created"])).expect_err("3rd is refused");
    assert!(matches!(err, Error::LimitReached { max: 2, .. }), "{err}");
    assert_eq!(store.count("acme").expect("count"), 2);
    create(&sub("globex", &["report_created"])).expect("another org has its own");
}
