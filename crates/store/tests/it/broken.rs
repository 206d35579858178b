//! One record that cannot be used costs only its own webhook: the organization's other
//! webhooks are still resolved, and the broken one is listed, readable and deletable.

use hookwire_store::Change;

use super::{open, sub};

/// Replaces the stored record of `id` with `raw`, as a damaged disk or a bad write would.
fn overwrite(dir: &tempfile::TempDir, org: &str, id: &uuid::Uuid, raw: &[u8]) {
    let db = super::retry_lock(|| Ok(sled::open(dir.path())?)).expect("sled opens");
    let tree = db.open_tree("subscriptions").expect("tree");
    let mut key = org.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    assert!(
        tree.insert(key, raw).expect("insert").is_some(),
        "the record was there"
    );
    db.flush().expect("flush");
}

/// A record whose signing secret no longer opens: one byte of its sealed value flipped.
fn with_unopenable_secret(raw: &[u8]) -> Vec<u8> {
    let mut record: serde_json::Value = serde_json::from_slice(raw).expect("record");
    let sealed = record["keys"][0]["sealed"]
        .as_str()
        .expect("sealed")
        .to_owned();
    let flipped = if sealed.starts_with('A') { "B" } else { "A" };
    record["keys"][0]["sealed"] = format!("{flipped}{}", &sealed[1..]).into();
    serde_json::to_vec(&record).expect("json")
}

fn raw_record(dir: &tempfile::TempDir, org: &str, id: &uuid::Uuid) -> Vec<u8> {
    let db = super::retry_lock(|| Ok(sled::open(dir.path())?)).expect("sled opens");
    let tree = db.open_tree("subscriptions").expect("tree");
    let mut key = org.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    tree.get(key).expect("get").expect("stored").to_vec()
}

#[test]
fn a_record_that_cannot_be_read_costs_only_its_own_webhook() {
    for damage in ["secret", "json"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (good, bad) = (
            sub("acme", &["report_created"]),
            sub("acme", &["report_created"]),
        );
        {
            let store = open(&dir);
            store.apply(Change::Upsert(good.clone())).expect("apply");
            store.apply(Change::Upsert(bad.clone())).expect("apply");
        }
        let raw = raw_record(&dir, "acme", &bad.id);
        let damaged = match damage {
            "secret" => with_unopenable_secret(&raw),
            _ => b"{ not a record".to_vec(),
        };
        overwrite(&dir, "acme", &bad.id, &damaged);

        let store = open(&dir);
        let subscribers = store
            .subscribers("acme", "report_created")
            .expect("resolves");
        let ids: Vec<_> = subscribers.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            vec![good.id],
            "{damage}: the sound webhook still receives"
        );

        let read = store.get("acme", &bad.id).expect("get").expect("listed");
        assert!(
            !read.enabled,
            "{damage}: a broken webhook reads as disabled"
        );
        let reason = read.broken_reason.expect("a broken reason");
        assert!(!reason.is_empty(), "{damage}: {reason}");
        assert!(read.keys.is_empty(), "{damage}: nothing secret is made up");
        if damage == "secret" {
            assert_eq!(read.url, bad.url, "what could be read is shown");
        }
        let listed = store.list("acme").expect("list");
        assert_eq!(listed.len(), 2, "{damage}: both are listed");
        let page = store.list_page("acme", None, 10).expect("page");
        assert_eq!(
            page.items
                .iter()
                .filter(|s| s.broken_reason.is_some())
                .count(),
            usize::from(damage == "json"),
            "{damage}: a listing opens no secret, so only an undecodable record is broken there"
        );

        store
            .apply(Change::Delete {
                org: "acme".into(),
                id: bad.id,
            })
            .expect("a broken webhook can be deleted");
        assert!(store.get("acme", &bad.id).expect("get").is_none());
        assert_eq!(store.count("acme").expect("count"), 1);
        drop(store);
        let db = super::retry_lock(|| Ok(sled::open(dir.path())?)).expect("sled opens");
        let index = db.open_tree("subscriptions_by_event").expect("tree");
        let dangling = index
            .iter()
            .keys()
            .filter(|k| k.as_ref().expect("key").ends_with(bad.id.as_bytes()))
            .count();
        assert_eq!(dangling, 0, "{damage}: its index entries went with it");
    }
}
