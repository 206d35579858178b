//! The payload archive: one body per (org, event id), ranges in receipt order, pruning.

use hookwire_store::{Change, Error, Payload};

use crate::open;

fn payload(org: &str, id: &str, at_ms: u64, body: &[u8]) -> Payload {
    Payload {
        org: org.into(),
        event_id: id.into(),
        event_type: "report_created".into(),
        received_at_ms: at_ms,
        published_at_ms: Some(at_ms - 1),
        body: body.to_vec(),
        body_bytes: body.len(),
    }
}

fn ids(page: &[Payload]) -> Vec<&str> {
    page.iter().map(|p| p.event_id.as_str()).collect()
}

#[test]
fn one_body_per_event_however_often_it_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let first = payload(
        "acme",
        "evt-1",
        1000,
        b"{\"event\":\"report_created\",\"n\":1}",
    );
    // A redelivered event: recorded twice in one batch and again in a later one.
    store
        .apply(Change::RecordPayloads(vec![first.clone(), first.clone()]))
        .expect("record");
    let again = payload("acme", "evt-1", 2000, b"{\"changed\":true}");
    store
        .apply(Change::RecordPayloads(vec![again]))
        .expect("record");
    // The same id in another organization is another event.
    let other = payload("globex", "evt-1", 1500, b"{}");
    store
        .apply(Change::RecordPayloads(vec![other.clone()]))
        .expect("record");
    assert_eq!(
        store.payload_stats().expect("stats"),
        (2, (first.body.len() + 2) as u64)
    );
    assert_eq!(store.payload("acme", "evt-1").expect("read"), Some(first));
    assert_eq!(store.payload("globex", "evt-1").expect("read"), Some(other));
    assert_eq!(store.payload("acme", "evt-2").expect("read"), None);
}

#[test]
fn a_body_larger_than_a_piece_reads_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let big = payload("acme", "big", 1000, &body);
    store
        .apply(Change::RecordPayloads(vec![big.clone()]))
        .expect("record");
    assert_eq!(store.payload("acme", "big").expect("read"), Some(big));
}

#[test]
fn a_range_is_read_in_receipt_order_a_page_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let all: Vec<Payload> = (0..7u64)
        .map(|i| payload("acme", &format!("evt-{i}"), 1000 + i * 10, b"{}"))
        .chain([payload("globex", "evt-g", 1030, b"{}")])
        .collect();
    store.apply(Change::RecordPayloads(all)).expect("record");
    // [1010, 1060): evt-1 … evt-5, by twos.
    let first = store.payloads("acme", 1010, 1060, None, 2).expect("page");
    assert_eq!(ids(&first.items), ["evt-1", "evt-2"]);
    assert!(
        first
            .items
            .iter()
            .all(|p| p.body.is_empty() && p.body_bytes == 2)
    );
    let second = store
        .payloads("acme", 1010, 1060, first.next_cursor.as_deref(), 2)
        .expect("page");
    assert_eq!(ids(&second.items), ["evt-3", "evt-4"]);
    let third = store
        .payloads("acme", 1010, 1060, second.next_cursor.as_deref(), 2)
        .expect("page");
    assert_eq!(ids(&third.items), ["evt-5"]);
    assert_eq!(third.next_cursor, None);
    let bad = store.payloads("acme", 0, 2000, Some("zz"), 2);
    assert!(matches!(bad, Err(Error::InvalidCursor(_))), "{bad:?}");
    let foreign = store.payloads("globex", 0, 2000, first.next_cursor.as_deref(), 2);
    assert!(
        matches!(foreign, Err(Error::InvalidCursor(_))),
        "{foreign:?}"
    );
}

#[test]
fn pruning_drops_what_was_received_before_the_cutoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let body = vec![b'x'; 10_000];
    store
        .apply(Change::RecordPayloads(vec![
            payload("acme", "old", 1000, &body),
            payload("globex", "old", 1500, &body),
            payload("acme", "young", 3000, &body),
        ]))
        .expect("record");
    store
        .apply(Change::PrunePayloads {
            older_than_ms: 2000,
            max_bytes: u64::MAX,
            max_bytes_per_org: u64::MAX,
        })
        .expect("prune");
    assert_eq!(store.payload("acme", "old").expect("read"), None);
    assert_eq!(store.payload("globex", "old").expect("read"), None);
    assert!(store.payload("acme", "young").expect("read").is_some());
    assert_eq!(store.payload_stats().expect("stats"), (1, 10_000));
    assert_eq!(
        ids(&store
            .payloads("acme", 0, u64::MAX, None, 10)
            .expect("page")
            .items),
        ["young"]
    );
    // A pruned event can be kept again (an event redelivered after its retention).
    store
        .apply(Change::RecordPayloads(vec![payload(
            "acme", "old", 4000, b"{}",
        )]))
        .expect("record");
    assert_eq!(
        store
            .payload("acme", "old")
            .expect("read")
            .map(|p| p.received_at_ms),
        Some(4000)
    );
}

/// A store written with the earlier layout (a record, a body, a time-index and an
/// age-index tree) opens with its kept events moved to the current one, the stream
/// offset with them, and the old trees gone.
#[test]
fn the_earlier_layout_is_migrated_when_the_store_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big: Vec<u8> = (0..9_000u32).map(|i| (i % 251) as u8).collect();
    {
        let db = sled::open(dir.path()).expect("sled");
        let records = db.open_tree("payloads").expect("tree");
        let bodies = db.open_tree("payload_bodies").expect("tree");
        let by_time = db.open_tree("payloads_by_time").expect("tree");
        let by_age = db.open_tree("payloads_by_age").expect("tree");
        for (seq, id, at, body) in [
            (1u64, "evt-1", 1000u64, b"{\"n\":1}".to_vec()),
            (2, "evt-big", 1010, big.clone()),
        ] {
            let meta = serde_json::json!({
                "event_type": "report_created",
                "received_at_ms": at,
                "published_at_ms": at - 1,
                "seq": seq,
                "body_bytes": body.len(),
            });
            records
                .insert(
                    format!("acme\0{id}"),
                    serde_json::to_vec(&meta).expect("json"),
                )
                .expect("record");
            for (i, piece) in body.chunks(4096).enumerate() {
                let mut key = seq.to_be_bytes().to_vec();
                key.extend_from_slice(&(i as u32).to_be_bytes());
                bodies.insert(key, piece).expect("piece");
            }
            let mut time = b"acme\0".to_vec();
            time.extend_from_slice(&at.to_be_bytes());
            time.extend_from_slice(&seq.to_be_bytes());
            by_time.insert(time, id.as_bytes()).expect("by time");
            let mut age = at.to_be_bytes().to_vec();
            age.extend_from_slice(&seq.to_be_bytes());
            by_age
                .insert(age, format!("acme\0{id}").as_bytes())
                .expect("by age");
        }
        records
            .insert(b"\xffapplied_offset", &41u64.to_be_bytes())
            .expect("offset");
        db.flush().expect("flush");
    }
    let store = open(&dir);
    assert_eq!(
        store.payload("acme", "evt-1").expect("read"),
        Some(payload("acme", "evt-1", 1000, b"{\"n\":1}"))
    );
    assert_eq!(
        store.payload("acme", "evt-big").expect("read"),
        Some(payload("acme", "evt-big", 1010, &big))
    );
    assert_eq!(
        ids(&store
            .payloads("acme", 0, u64::MAX, None, 10)
            .expect("page")
            .items),
        ["evt-1", "evt-big"]
    );
    assert_eq!(store.payloads_applied_offset().expect("offset"), Some(41));
    assert_eq!(
        store.payload_stats().expect("stats"),
        (2, 7 + big.len() as u64)
    );
    drop(store);
    // sled's lock is freed a moment after the store's threads end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let db = loop {
        match sled::open(dir.path()) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() > deadline => panic!("sled: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    let names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    for old in [
        "payloads",
        "payload_bodies",
        "payloads_by_time",
        "payloads_by_age",
    ] {
        assert!(
            !names.iter().any(|n| n == old),
            "{old} is still there: {names:?}"
        );
    }
}

#[test]
fn byte_budgets_evict_the_oldest_bodies_first_per_org_then_in_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    const KIB: usize = 1024;
    let body = vec![b'x'; 300 * KIB];
    let record = |store: &hookwire_store::Store| {
        store
            .apply(Change::RecordPayloads(vec![
                payload("acme", "a1", 1_000, &body),
                payload("globex", "g1", 1_500, &body),
                payload("acme", "a2", 61_000, &body),
                payload("acme", "a3", 62_000, &body),
                payload("acme", "a4", 121_000, &body),
                payload("acme", "a5", 181_000, &body),
                payload("globex", "g2", 200_000, &body),
            ]))
            .expect("record");
    };
    let prune = |store: &hookwire_store::Store, max_bytes: usize, max_bytes_per_org: usize| {
        store
            .apply(Change::PrunePayloads {
                older_than_ms: 0,
                max_bytes: max_bytes as u64,
                max_bytes_per_org: max_bytes_per_org as u64,
            })
            .expect("prune");
    };
    let kept = |store: &hookwire_store::Store| -> Vec<&str> {
        ["a1", "a2", "a3", "a4", "a5", "g1", "g2"]
            .into_iter()
            .filter(|id| {
                let org = if id.starts_with('a') {
                    "acme"
                } else {
                    "globex"
                };
                store.payload(org, id).expect("read").is_some()
            })
            .collect()
    };
    {
        let store = open(&dir);
        record(&store);
        // Three bodies fit in one organization's MiB: acme's two oldest go, globex keeps both.
        prune(&store, 100 * 1024 * KIB, 1024 * KIB);
        assert_eq!(kept(&store), ["a3", "a4", "a5", "g1", "g2"]);
        assert_eq!(
            store.payload_stats().expect("stats").1,
            5 * 300 * KIB as u64
        );
    }
    // The usage is counted again when the store opens: the same budgets evict nothing more,
    // a smaller total evicts the oldest of all, whatever its organization.
    let store = open(&dir);
    prune(&store, 100 * 1024 * KIB, 1024 * KIB);
    assert_eq!(kept(&store), ["a3", "a4", "a5", "g1", "g2"]);
    prune(&store, 1200 * KIB, 1024 * KIB);
    assert_eq!(
        kept(&store),
        ["a3", "a4", "a5", "g2"],
        "g1 was the oldest of all"
    );
    prune(&store, 700 * KIB, 700 * KIB);
    assert_eq!(kept(&store), ["a5", "g2"]);
}

/// Each organization's kept events and bytes, counted with every change: a restart reads
/// them, and a store the build before wrote (schema 2, no counts) gets them from one read
/// of the archive at its first open by this build. Both equal a full read, and the
/// budgets act on them.
#[test]
fn the_kept_counts_survive_a_restart_and_are_built_for_a_schema_2_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = vec![b'x'; 5_000];
    let prune = |store: &hookwire_store::Store, older_than_ms, max_bytes_per_org| {
        store
            .apply(Change::PrunePayloads {
                older_than_ms,
                max_bytes: u64::MAX,
                max_bytes_per_org,
            })
            .expect("prune");
        assert_eq!(
            store.payload_usage(),
            store.payload_usage_walked().expect("walk")
        );
    };
    {
        let store = open(&dir);
        let batch = (0..200u64)
            .map(|i| {
                let org = if i % 4 == 0 { "globex" } else { "acme" };
                let size = (i as usize * 37) % body.len();
                payload(org, &format!("evt-{i}"), 1_000 + i * 100, &body[..size])
            })
            .collect();
        store.apply(Change::RecordPayloads(batch)).expect("record");
        store
            .apply(Change::ApplyPayloads {
                payloads: vec![payload("initech", "evt-0", 6_000, b"{}")],
                offset: 3,
            })
            .expect("apply");
        // A cutoff inside a block, then acme's budget.
        prune(&store, 5_050, 100_000);
        store.flush().expect("flush");
    }
    let store = open(&dir);
    let walked = store.payload_usage_walked().expect("walk");
    assert_eq!(store.payload_usage(), walked, "read at the restart");
    assert_eq!(
        walked.keys().collect::<Vec<_>>(),
        ["acme", "globex", "initech"]
    );
    assert!(walked["acme"].bytes <= 100_000);
    drop(store);
    {
        let db = crate::retry_lock(|| Ok(sled::open(dir.path())?)).expect("sled");
        let tree = db.open_tree("payload_archive").expect("tree");
        let counts: Vec<sled::IVec> = tree
            .scan_prefix(b"\xffusage\x00")
            .keys()
            .collect::<Result<_, _>>()
            .expect("keys");
        assert_eq!(counts.len(), walked.len(), "one entry per organization");
        for key in counts {
            tree.remove(key).expect("remove");
        }
        db.insert("schema_version", &2u32.to_be_bytes())
            .expect("insert");
        db.flush().expect("flush");
    }
    let store = open(&dir);
    assert_eq!(store.payload_usage(), walked, "built at the upgrade");
    assert_eq!(store.payloads_applied_offset().expect("offset"), Some(3));
    prune(&store, 0, walked["acme"].bytes / 2);
    assert!(store.payload_usage()["acme"].bytes <= walked["acme"].bytes / 2);
    drop(store);
    crate::assert_schema_is_current(dir.path());
}
