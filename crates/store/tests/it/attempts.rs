//! The attempts stream's batches applied to separate attempt logs: each offset is applied
//! once, whatever the reader hands over again, and the same batches leave every log alike,
//! cursors included.

use hookwire_store::{AttemptQuery, AttemptRecord, Change, Store};
use uuid::Uuid;

use crate::{attempt, open};

/// Every attempt of `sub` as `store` pages them `limit` at a time, with each page's cursor.
fn pages(store: &Store, sub: &Uuid, limit: usize) -> Vec<(Vec<AttemptRecord>, Option<String>)> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .attempts(
                sub,
                &AttemptQuery {
                    limit,
                    cursor: cursor.clone(),
                    ..AttemptQuery::default()
                },
            )
            .expect("page");
        cursor = page.next_cursor.clone();
        pages.push((page.items, page.next_cursor));
        if cursor.is_none() {
            return pages;
        }
    }
}

fn all(store: &Store, sub: &Uuid) -> Vec<AttemptRecord> {
    pages(store, sub, 1000)
        .into_iter()
        .flat_map(|(items, _)| items)
        .collect()
}

/// A batch as it travels the stream and as a reader decodes it.
fn through_the_stream(records: &[AttemptRecord]) -> Vec<AttemptRecord> {
    let bytes = AttemptRecord::encode_batch(records).expect("encoded");
    AttemptRecord::decode_batch(&bytes).expect("decoded")
}

fn apply(store: &Store, records: &[AttemptRecord], offset: u64) {
    store
        .apply(Change::ApplyAttempts {
            records: through_the_stream(records),
            offset,
        })
        .expect("applied");
}

#[test]
fn a_batch_read_again_is_applied_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = Uuid::now_v7();
    let first: Vec<_> = (1..=3)
        .map(|n| attempt(&sub, n, 1000 * u64::from(n), "retry"))
        .collect();
    let second = vec![attempt(&sub, 4, 4000, "delivered")];
    {
        let store = open(&dir);
        assert_eq!(store.attempts_applied_offset().expect("offset"), None);
        apply(&store, &first, 7);
        // Redelivered: the reader reconnected before it acked.
        apply(&store, &first, 7);
        apply(&store, &second, 9);
        // Handed over again from an earlier offset (a resumed read starts at its chunk).
        apply(&store, &first, 7);
        assert_eq!(store.attempts_applied_offset().expect("offset"), Some(9));
        assert_eq!(
            all(&store, &sub)
                .iter()
                .map(|r| r.attempt)
                .collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        // Pruning leaves the offset in place: it is not an attempt.
        store
            .apply(Change::PruneAttempts {
                older_than_ms: 2000,
                keep_per_webhook: 100,
            })
            .expect("prune");
        assert_eq!(store.attempts_applied_offset().expect("offset"), Some(9));
        assert_eq!(
            all(&store, &sub)
                .iter()
                .map(|r| r.attempt)
                .collect::<Vec<_>>(),
            [2, 3, 4]
        );
        store.flush().expect("flush");
    }
    // Opened again (a restarted node): the offset was kept with the attempts, so reading
    // the same batches again adds nothing.
    let store = open(&dir);
    assert_eq!(store.attempts_applied_offset().expect("offset"), Some(9));
    apply(&store, &first, 7);
    apply(&store, &second, 9);
    assert_eq!(
        all(&store, &sub)
            .iter()
            .map(|r| r.attempt)
            .collect::<Vec<_>>(),
        [2, 3, 4]
    );
}

#[test]
fn the_same_batches_leave_every_attempt_log_alike() {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let (a, b) = (open(&dir_a), open(&dir_b));
    let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
    // Two nodes' batches with attempts at the same milliseconds, and more than a chunk.
    let batches: Vec<Vec<AttemptRecord>> = (0..4u32)
        .map(|batch| {
            (0..150u32)
                .map(|n| {
                    let sub = if n % 3 == 0 { &two } else { &one };
                    attempt(
                        sub,
                        batch * 1000 + n,
                        10_000 + u64::from(n / 2),
                        "delivered",
                    )
                })
                .collect()
        })
        .collect();
    // Node b made something of its own before: its generated ids differ from a's.
    b.apply(Change::RecordAttempts(vec![attempt(
        &Uuid::now_v7(),
        1,
        5,
        "retry",
    )]))
    .expect("record");
    for (offset, batch) in batches.iter().enumerate() {
        apply(&a, batch, offset as u64);
    }
    // b rebuilds in another order of arrival: the first batch again after the rest.
    for (offset, batch) in batches.iter().enumerate() {
        apply(&b, batch, offset as u64);
    }
    apply(&b, &batches[0], 0);
    for sub in [&one, &two] {
        let on_a = pages(&a, sub, 7);
        assert_eq!(on_a, pages(&b, sub, 7), "same pages and cursors");
        let count: usize = on_a.iter().map(|(items, _)| items.len()).sum();
        assert_eq!(count, if *sub == one { 400 } else { 200 });
    }
    for store in [&a, &b] {
        store
            .apply(Change::PruneAttempts {
                older_than_ms: 10_010,
                keep_per_webhook: 150,
            })
            .expect("prune");
    }
    for sub in [&one, &two] {
        assert_eq!(pages(&a, sub, 7), pages(&b, sub, 7), "pruned alike");
        assert_eq!(all(&a, sub).len(), 150);
    }
}

/// A store of schema 1 (its attempt log without a key tree, the applied offset among its
/// chunks) gets its key tree and index by outcome at its first open by this build, and
/// records the version.
#[test]
fn a_schema_1_attempt_log_is_upgraded_at_open_and_filters_by_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = Uuid::now_v7();
    let records: Vec<AttemptRecord> = (1..=300u32)
        .map(|n| {
            let outcome = if n % 10 == 0 { "gone" } else { "delivered" };
            attempt(&sub, n, 1_000 * u64::from(n), outcome)
        })
        .collect();
    {
        let store = open(&dir);
        store
            .apply(Change::ApplyAttempts { records, offset: 9 })
            .expect("apply");
        store.flush().expect("flush");
    }
    {
        let db = crate::retry_lock(|| Ok(sled::open(dir.path())?)).expect("sled");
        let keys = db.open_tree("attempt_keys").expect("tree");
        let chunks = db.open_tree("attempts").expect("tree");
        let offset = keys
            .get(b"\xffapplied_offset")
            .expect("get")
            .expect("offset");
        chunks
            .insert(b"\xffapplied_offset", offset)
            .expect("insert");
        db.drop_tree("attempt_keys").expect("drop");
        db.insert("schema_version", &1u32.to_be_bytes())
            .expect("insert");
        db.flush().expect("flush");
    }
    let store = open(&dir);
    assert_eq!(store.attempts_applied_offset().expect("offset"), Some(9));
    let walk = |outcome: Option<&str>, limit| {
        let mut query = AttemptQuery {
            outcome: outcome.map(Into::into),
            limit,
            ..AttemptQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.attempts(&sub, &query).expect("page");
            seen.extend(page.items.iter().map(|r| r.attempt));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return seen,
            }
        }
    };
    assert_eq!(walk(None, 70), (1..=300).collect::<Vec<_>>());
    assert_eq!(
        walk(Some("gone"), 7),
        (1..=30).map(|n| n * 10).collect::<Vec<_>>()
    );
    drop(store);
    crate::assert_schema_is_current(dir.path());
}
