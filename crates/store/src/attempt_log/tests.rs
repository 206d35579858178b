use super::*;
use crate::records::{AttemptQuery, DELIVERED};

fn attempt(subscription_id: Uuid, attempt: u32, at_ms: u64) -> AttemptRecord {
    AttemptRecord {
        subscription_id,
        event_id: "e1".into(),
        message_id: "msg_1".into(),
        attempt,
        at_ms,
        outcome: "delivered".into(),
        status: Some(200),
        latency_ms: 1,
        error_kind: None,
        error: None,
        response_excerpt: String::new(),
        transformed: None,
    }
}

fn attempts_of(log: &Log, sub: Uuid) -> Vec<u32> {
    let query = AttemptQuery {
        limit: 100,
        ..AttemptQuery::default()
    };
    let page = page(log, &sub, &query).expect("page");
    page.items.iter().map(|r| r.attempt).collect()
}

#[test]
fn reads_and_prunes_the_one_attempt_values_of_earlier_builds() {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let log = Log::open(&db).expect("log");
    let sub = Uuid::now_v7();
    // Earlier builds: `subscription ‖ time ‖ seq` → one attempt, and no key tree.
    for (n, at) in [(1u32, 100u64), (2, 200)] {
        let mut key = attempt_prefix(&sub);
        key.extend_from_slice(&at.to_be_bytes());
        key.extend_from_slice(&u64::from(n).to_be_bytes());
        log.chunks
            .insert(key, encode(&attempt(sub, n, at)).expect("encode"))
            .expect("insert");
    }
    assert_eq!(rebuild_keys(&log).expect("upgrade"), 2);
    record(&log, &db, &[attempt(sub, 3, 300)]).expect("record");
    assert_eq!(attempts_of(&log, sub), [1, 2, 3]);
    prune(&log, 150, 10).expect("prune");
    assert_eq!(attempts_of(&log, sub), [2, 3], "by age");
    prune(&log, 0, 1).expect("prune");
    assert_eq!(attempts_of(&log, sub), [3], "by count");
}

/// Two batches of 100 attempts (two chunks each) an hour apart, alternately delivered
/// and failed, each with its own `webhook-id`.
fn two_batches(log: &Log, db: &sled::Db, sub: Uuid) {
    for (batch, base) in [(0u32, 1_000u64), (1, 3_601_000)] {
        let records: Vec<_> = (0..100u32)
            .map(|i| {
                let n = batch * 100 + i;
                AttemptRecord {
                    message_id: format!("msg_{n}"),
                    outcome: if n % 2 == 0 { DELIVERED } else { "retry" }.into(),
                    ..attempt(sub, n, base + u64::from(i))
                }
            })
            .collect();
        record(log, db, &records).expect("record");
    }
}

#[test]
fn settled_since_finds_a_delivered_attempt_or_the_attempt_asked_in_its_window() {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let log = Log::open(&db).expect("log");
    let (sub, other) = (Uuid::now_v7(), Uuid::now_v7());
    two_batches(&log, &db, sub);
    let found = |sub: &Uuid, id: &str, since: u64, attempt: u32| {
        settled_since(&log, sub, id, since, since, attempt).expect("lookup")
    };
    assert!(found(&sub, "msg_0", 0, 1), "delivered");
    assert!(found(&sub, "msg_150", 3_000_000, 1), "in a later chunk");
    assert!(
        found(&sub, "msg_150", 3_000_000, 999),
        "delivered, whatever the attempt"
    );
    assert!(
        found(&sub, "msg_1", 0, 1),
        "its attempt 1 failed and settled"
    );
    assert!(
        !found(&sub, "msg_1", 0, 2),
        "its attempt 2 is yet to be made"
    );
    assert!(!found(&sub, "msg_0", 1_001, 1), "before the window");
    assert!(
        !found(&sub, "msg_0", 3_000_000, 1),
        "in a chunk the key skips"
    );
    assert!(!found(&other, "msg_0", 0, 1), "another webhook's");
    assert!(!found(&sub, "msg_999", 0, 1), "never attempted");
    let windows = |delivered_since: u64, attempted_since: u64, id: &str| {
        settled_since(&log, &sub, id, delivered_since, attempted_since, 1).expect("lookup")
    };
    assert!(windows(0, 5_000_000, "msg_0"), "delivered in its window");
    assert!(
        !windows(0, 5_000_000, "msg_1"),
        "attempted before its window"
    );
    assert!(windows(5_000_000, 0, "msg_1"), "attempted in its window");
}

#[test]
fn a_time_window_pages_the_same_attempts_as_a_filter_over_the_whole_log() {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let log = Log::open(&db).expect("log");
    let sub = Uuid::now_v7();
    two_batches(&log, &db, sub);
    let window = |since_ms, until_ms| {
        let mut query = AttemptQuery {
            since_ms,
            until_ms,
            limit: 30,
            ..AttemptQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = page(&log, &sub, &query).expect("page");
            seen.extend(page.items.iter().map(|r| r.attempt));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return seen,
            }
        }
    };
    assert_eq!(window(None, None), (0..200).collect::<Vec<_>>());
    assert_eq!(
        window(Some(3_601_050), None),
        (150..200).collect::<Vec<_>>()
    );
    assert_eq!(window(None, Some(1_070)), (0..70).collect::<Vec<_>>());
    assert_eq!(
        window(Some(1_090), Some(3_601_010)),
        (90..110).collect::<Vec<_>>()
    );
    assert!(window(Some(2_000), Some(3_000)).is_empty());
}

/// Every page of `query` from its start, through the cursors.
fn walk(log: &Log, sub: Uuid, mut query: AttemptQuery) -> Vec<AttemptRecord> {
    let mut seen = Vec::new();
    loop {
        let page = page(log, &sub, &query).expect("page");
        assert!(page.items.len() <= query.limit);
        seen.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return seen,
        }
    }
}

/// Batches of `n` attempts to `sub` and to another webhook, a few ms apart, with every
/// outcome: one in 3 `retry`, one in 7 `permanent`, one in 50 `gone`.
fn mixed(log: &Log, db: &sled::Db, sub: Uuid, from: u32, n: u32) {
    let other = Uuid::now_v7();
    let records: Vec<_> = (from..from + n)
        .flat_map(|i| {
            let outcome = match i {
                i if i % 50 == 0 => "gone",
                i if i % 7 == 0 => "permanent",
                i if i % 3 == 0 => "retry",
                _ => DELIVERED,
            };
            let one = AttemptRecord {
                message_id: format!("msg_{i}"),
                outcome: outcome.into(),
                ..attempt(sub, i, 1_000_000 + u64::from(i) * 5)
            };
            let theirs = AttemptRecord {
                subscription_id: other,
                ..one.clone()
            };
            [one, theirs]
        })
        .collect();
    for batch in records.chunks(150) {
        record(log, db, batch).expect("record");
    }
}

#[test]
fn an_outcome_page_holds_exactly_its_attempts_through_cursors_and_prunes() {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let log = Log::open(&db).expect("log");
    let sub = Uuid::now_v7();
    mixed(&log, &db, sub, 0, 500);
    let check = |what: &str| {
        let all = walk(
            &log,
            sub,
            AttemptQuery {
                limit: 1000,
                ..AttemptQuery::default()
            },
        );
        assert!(!all.is_empty(), "{what}");
        for outcome in [DELIVERED, "retry", "permanent", "gone", "unknown"] {
            for (limit, since, until) in [
                (7, None, None),
                (1, None, None),
                (13, Some(1_000_600), Some(1_002_000)),
            ] {
                let query = AttemptQuery {
                    outcome: Some(outcome.into()),
                    since_ms: since,
                    until_ms: until,
                    limit,
                    ..AttemptQuery::default()
                };
                let expected: Vec<u32> = all
                    .iter()
                    .filter(|r| r.outcome == outcome)
                    .filter(|r| {
                        since.is_none_or(|t| r.at_ms >= t) && until.is_none_or(|t| r.at_ms < t)
                    })
                    .map(|r| r.attempt)
                    .collect();
                let got: Vec<u32> = walk(&log, sub, query).iter().map(|r| r.attempt).collect();
                assert_eq!(
                    got, expected,
                    "{what}: {outcome} by {limit}, {since:?}..{until:?}"
                );
            }
        }
        all.iter().map(|r| r.attempt).collect::<Vec<_>>()
    };
    assert_eq!(check("recorded"), (0..500).collect::<Vec<_>>());
    // Mid-chunk cuts: the kept part of a chunk is rewritten with its own entries.
    prune(&log, 0, 333).expect("prune by count");
    assert_eq!(check("pruned by count"), (167..500).collect::<Vec<_>>());
    prune(&log, 1_000_000 + 250 * 5, 1000).expect("prune by age");
    assert_eq!(check("pruned by age"), (250..500).collect::<Vec<_>>());
    mixed(&log, &db, sub, 500, 100);
    assert_eq!(check("recorded again"), (250..600).collect::<Vec<_>>());
    prune(&log, u64::MAX, 1000).expect("prune all");
    assert!(
        log.keys
            .iter()
            .keys()
            .all(|k| k.is_ok_and(|k| !by_outcome::is_entry(&k))),
        "no entry outlives its chunk"
    );
}

#[test]
fn a_log_without_keys_is_upgraded_and_its_wide_chunks_split_for_time_seeks() {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let log = Log::open(&db).expect("log");
    let sub = Uuid::now_v7();
    // As the previous schema wrote it: chunks in one tree, the applied offset with them,
    // and a chunk of 64 attempts over 63 s (a batch with slow attempts).
    let records: Vec<AttemptRecord> = (0..64u32)
        .map(|i| AttemptRecord {
            outcome: if i % 2 == 0 { DELIVERED } else { "retry" }.into(),
            ..attempt(sub, i, 100_000 + u64::from(i) * 1_000)
        })
        .collect();
    let refs: Vec<&AttemptRecord> = records.iter().collect();
    let key = ChunkMeta::of(&refs, 7).key(&sub);
    log.chunks
        .insert(key, encode(&refs).expect("encode"))
        .expect("insert");
    log.chunks
        .insert(APPLIED_KEY, &41u64.to_be_bytes())
        .expect("insert");
    assert_eq!(applied_offset(&log).expect("offset"), None);
    rebuild_keys(&log).expect("upgrade");
    assert_eq!(applied_offset(&log).expect("offset"), Some(41));
    let spans: Vec<ChunkMeta> = log
        .keys
        .iter()
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| k.len() >= 32 && !by_outcome::is_entry(k))
        .map(|k| ChunkMeta::parse(&k).expect("key"))
        .collect();
    assert!(
        spans.len() > 1
            && spans
                .iter()
                .all(|m| m.last_at_ms - m.first_at_ms <= MAX_SPAN_MS),
        "{spans:?}"
    );
    let all = walk(
        &log,
        sub,
        AttemptQuery {
            limit: 10,
            ..AttemptQuery::default()
        },
    );
    assert_eq!(
        all.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        (0..64).collect::<Vec<_>>()
    );
    for since in [100_000, 120_500, 140_000, 163_000, 170_000] {
        for outcome in [None, Some("retry")] {
            let query = AttemptQuery {
                since_ms: Some(since),
                outcome: outcome.map(Into::into),
                limit: 5,
                ..AttemptQuery::default()
            };
            let expected: Vec<u32> = all
                .iter()
                .filter(|r| r.at_ms >= since && outcome.is_none_or(|o| r.outcome == o))
                .map(|r| r.attempt)
                .collect();
            let got: Vec<u32> = walk(&log, sub, query).iter().map(|r| r.attempt).collect();
            assert_eq!(got, expected, "since {since}, {outcome:?}");
        }
    }
}
