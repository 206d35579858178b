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

/// The counts as kept in memory, as a restart reads them from the tree, and as a full
/// read of the archive counts them: all three equal.
fn assert_exact(db: &sled::Db, payloads: &Payloads) {
    let walked = payloads.walk_usage().expect("walk");
    assert_eq!(payloads.usage(), walked, "the counts kept in memory");
    assert_eq!(
        Payloads::open(db).expect("reopen").usage(),
        walked,
        "the counts read at open"
    );
    let bytes = walked.values().map(|k| k.bytes).sum::<u64>();
    assert_eq!(payloads.kept_bytes(), bytes);
    assert_eq!(payloads.stats().expect("stats").1, bytes);
}

/// `hookwire_payload_archive_bytes` and the per-organization budget read the kept counts:
/// they must equal a full read after inserts (a repeat counted once, bodies in pieces,
/// a batch of the payloads stream), a prune by age whose cutoff falls inside a block, the
/// evictions of both budgets, and a restart.
#[test]
fn the_kept_counts_follow_every_insert_prune_and_eviction() {
    let (db, payloads) = open();
    let big = vec![b'x'; PIECE * 2 + 5];
    let batch: Vec<Payload> = (0..300u64)
        .map(|i| {
            let (org, body) = match i % 10 {
                3 => ("globex", vec![b'g'; 700]),
                7 => ("acme", big.clone()),
                _ => ("acme", vec![b'a'; 1000]),
            };
            payload(org, &format!("evt-{i:03}"), 10_000 + i * 10, &body)
        })
        .collect();
    payloads.insert(&db, &batch, None).expect("insert");
    assert_exact(&db, &payloads);
    payloads.insert(&db, &batch[..40], None).expect("repeat");
    let stream: Vec<Payload> = (0..20u64)
        .map(|i| payload("initech", &format!("evt-{i}"), 10_000 + i, b"{}"))
        .collect();
    payloads.insert(&db, &stream, Some(8)).expect("apply");
    assert_exact(&db, &payloads);
    let kept = payloads.usage();
    assert_eq!(
        (kept["acme"].events, kept["globex"].events, kept["initech"]),
        (
            270,
            30,
            KeptPayloads {
                events: 20,
                bytes: 40
            }
        )
    );

    // 11_505 falls inside a block: its older events go, the rest is rewritten.
    assert_eq!(payloads.prune(11_505).expect("prune"), 151 + 20);
    assert_exact(&db, &payloads);
    assert!(!payloads.usage().contains_key("initech"), "none kept");
    assert_eq!(
        payloads.tree.get(usage_key_of("initech")).expect("get"),
        None
    );

    let acme = payloads.usage()["acme"].bytes;
    let evicted = payloads.enforce_budgets(u64::MAX, acme / 2).expect("evict");
    assert!(evicted.per_org > 0 && evicted.total == 0, "{evicted:?}");
    assert!(payloads.usage()["acme"].bytes <= acme / 2);
    assert_exact(&db, &payloads);
    let evicted = payloads.enforce_budgets(20_000, u64::MAX).expect("evict");
    assert!(evicted.total > 0, "{evicted:?}");
    assert!(payloads.kept_bytes() <= 20_000);
    assert_exact(&db, &payloads);

    // Kept again once pruned.
    payloads.insert(&db, &batch[..10], None).expect("again");
    assert_exact(&db, &payloads);
}

fn usage_key_of(org: &str) -> Vec<u8> {
    let mut key = b"\xffusage\x00".to_vec();
    key.extend_from_slice(org.as_bytes());
    key
}

/// Writes and prunes from several threads at once (the payloads task, the payloads
/// stream's reader and the prune each minute): no count is lost or taken twice.
#[test]
fn the_kept_counts_stay_exact_under_concurrent_writes_and_prunes() {
    let (db, payloads) = open();
    std::thread::scope(|s| {
        for org in ["acme", "globex"] {
            let (db, payloads) = (&db, &payloads);
            s.spawn(move || {
                for round in 0..40u64 {
                    let batch: Vec<Payload> = (0..50u64)
                        .map(|i| {
                            let at = 1_000 + round * 500 + i * 10;
                            payload(org, &format!("evt-{round}-{i}"), at, &[b'x'; 300])
                        })
                        .collect();
                    payloads.insert(db, &batch, None).expect("insert");
                }
            });
        }
        for _ in 0..2 {
            let payloads = &payloads;
            s.spawn(move || {
                for cutoff in (0..40u64).map(|n| 1_000 + n * 500) {
                    payloads.prune(cutoff).expect("prune");
                    payloads.enforce_budgets(u64::MAX, 200_000).expect("evict");
                }
            });
        }
    });
    assert!(payloads.kept_bytes() > 0);
    assert_exact(&db, &payloads);
}

/// A store written before the counts were kept gets them from one read of the archive,
/// in place of any it held.
#[test]
fn the_counts_are_rebuilt_from_the_archive() {
    let (db, payloads) = open();
    let batch: Vec<Payload> = (0..100u64)
        .map(|i| {
            let org = if i % 3 == 0 { "globex" } else { "acme" };
            payload(org, &format!("evt-{i}"), 1_000 + i, &[b'x'; 100])
        })
        .collect();
    payloads.insert(&db, &batch, None).expect("insert");
    let expected = payloads.walk_usage().expect("walk");
    payloads.tree.remove(usage_key_of("acme")).expect("remove");
    payloads
        .tree
        .insert(usage_key_of("initech"), &[0; 16])
        .expect("stale");
    payloads
        .tree
        .insert(usage_key_of("globex"), &[1; 16])
        .expect("wrong");
    assert_ne!(Payloads::open(&db).expect("reopen").usage(), expected);
    let reopened = Payloads::open(&db).expect("reopen");
    assert_eq!(reopened.rebuild_usage().expect("rebuild"), expected);
    assert_exact(&db, &reopened);
}
