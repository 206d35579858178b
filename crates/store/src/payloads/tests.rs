use super::*;

fn payload(org: &str, id: &str, at_ms: u64, body: &[u8]) -> Payload {
    Payload {
        org: org.into(),
        event_id: id.into(),
        event_type: "report_run_completed".into(),
        received_at_ms: at_ms,
        published_at_ms: Some(at_ms - 1),
        body: body.to_vec(),
        body_bytes: body.len(),
    }
}

fn open() -> (sled::Db, Payloads) {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let payloads = Payloads::open(&db).expect("open");
    (db, payloads)
}

/// Every page of `[from, to)`, `limit` at a time, as event ids.
fn read_all(payloads: &Payloads, from: u64, to: u64, limit: usize) -> Vec<String> {
    let (mut ids, mut cursor) = (Vec::new(), None);
    loop {
        let page = payloads
            .page("acme", from, to, cursor.as_deref(), limit)
            .expect("page");
        assert!(page.items.len() <= limit);
        ids.extend(page.items.into_iter().map(|p| p.event_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// 300 events over 3 s, some with bodies kept in pieces: several blocks, each found,
/// paged across without a gap or a repeat, and pruned exactly at a cutoff that falls
/// inside a block.
#[test]
fn events_in_many_blocks_are_read_paged_and_pruned_exactly() {
    let (db, payloads) = open();
    let big = vec![b'x'; PIECE * 2 + 5];
    let all: Vec<Payload> = (0..300u64)
        .map(|i| {
            let body = if i % 50 == 7 {
                big.clone()
            } else {
                format!("{{\"n\":{i}}}").into_bytes()
            };
            payload("acme", &format!("evt-{i:03}"), 10_000 + i * 10, &body)
        })
        .collect();
    // Out of receipt order, and with a duplicate: kept once, in receipt order.
    let mut batch = all.clone();
    batch.reverse();
    batch.push(all[3].clone());
    payloads.insert(&db, &batch, None).expect("insert");
    let blocks = payloads.tree.scan_prefix(kind_prefix("acme", TIME)).count();
    assert!(blocks >= 300 / BLOCK_EVENTS, "{blocks} blocks");
    for p in &all {
        assert_eq!(
            payloads.get("acme", &p.event_id).expect("get").as_ref(),
            Some(p)
        );
    }
    let ids: Vec<String> = all.iter().map(|p| p.event_id.clone()).collect();
    assert_eq!(read_all(&payloads, 0, u64::MAX, 7), ids);
    // [10_995, 11_995): evt-100 … evt-199, the range starting and ending inside blocks.
    assert_eq!(read_all(&payloads, 10_995, 11_995, 64), ids[100..200]);
    assert_eq!(payloads.stats().expect("stats").0, 300);

    // The cutoff falls inside a block: what is older goes, what is younger stays.
    assert_eq!(payloads.prune(11_505).expect("prune"), 151);
    assert_eq!(read_all(&payloads, 0, u64::MAX, 50), ids[151..]);
    assert_eq!(payloads.get("acme", "evt-150").expect("get"), None);
    assert_eq!(
        payloads.get("acme", "evt-157").expect("get"),
        Some(all[157].clone())
    );
    // The pieces of pruned bodies went with them.
    let pieces = payloads.tree.scan_prefix(kind_prefix("acme", BODY)).count();
    assert_eq!(pieces, 3 * 3, "three big bodies left, three pieces each");
    // A pruned event can be kept again.
    payloads
        .insert(&db, &[payload("acme", "evt-000", 20_000, b"{}")], None)
        .expect("insert");
    assert!(payloads.get("acme", "evt-000").expect("get").is_some());
}

/// A store written before blocks keeps one event per time key, its record there as
/// it is: read, paged (an old cursor too), counted and pruned as a block of one.
#[test]
fn events_kept_one_per_key_before_blocks_are_read_as_blocks_of_one() {
    let (db, payloads) = open();
    let old: Vec<Payload> = (0..3u64)
        .map(|i| payload("acme", &format!("old-{i}"), 1_000 + i, b"{}"))
        .collect();
    for (i, p) in old.iter().enumerate() {
        let stamp = stamp(p.received_at_ms, 7 + i as u64);
        payloads
            .tree
            .insert(time_key("acme", &stamp), encode_record(p, true))
            .expect("record");
        payloads
            .tree
            .insert(id_key("acme", &p.event_id), &stamp)
            .expect("index");
    }
    let new = payload("acme", "new", 2_000, b"{}");
    payloads
        .insert(&db, std::slice::from_ref(&new), None)
        .expect("insert");
    assert_eq!(
        payloads.get("acme", "old-1").expect("get"),
        Some(old[1].clone())
    );
    assert_eq!(
        read_all(&payloads, 0, u64::MAX, 1),
        ["old-0", "old-1", "old-2", "new"]
    );
    // A cursor given out before blocks: the entry's own key.
    let mut cursor = org_prefix("acme");
    cursor.extend_from_slice(&stamp(1_000, 7));
    let page = payloads
        .page("acme", 0, u64::MAX, Some(&hex(&cursor)), 10)
        .expect("page");
    assert_eq!(
        page.items
            .iter()
            .map(|p| p.event_id.as_str())
            .collect::<Vec<_>>(),
        ["old-1", "old-2", "new"]
    );
    assert_eq!(payloads.stats().expect("stats").0, 4);
    assert_eq!(payloads.prune(1_002).expect("prune"), 2);
    assert_eq!(read_all(&payloads, 0, u64::MAX, 10), ["old-2", "new"]);
    assert_eq!(payloads.get("acme", "old-0").expect("get"), None);
}

/// `hookwire_payload_archive_bytes` reads the running count: it must equal a full scan
/// after inserts (a repeat counted once), a prune by age and an eviction by budget.
#[test]
fn the_kept_bytes_follow_every_insert_prune_and_eviction() {
    let (db, payloads) = open();
    let body = vec![b'x'; 1000];
    let batch: Vec<Payload> = (0..6u64)
        .map(|i| payload("acme", &format!("evt-{i}"), 10_000 + i * 1000, &body))
        .collect();
    payloads.insert(&db, &batch, None).expect("insert");
    payloads.insert(&db, &batch[..2], None).expect("repeat");
    let scanned = || payloads.stats().expect("stats").1;
    assert_eq!((payloads.kept_bytes(), scanned()), (6000, 6000));
    payloads.prune(11_500).expect("prune by age");
    assert_eq!((payloads.kept_bytes(), scanned()), (4000, 4000));
    payloads.enforce_budgets(2500, u64::MAX).expect("evict");
    assert_eq!((payloads.kept_bytes(), scanned()), (2000, 2000));
}
