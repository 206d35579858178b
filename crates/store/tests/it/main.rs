//! Integration tests of the store against a real sled directory.

use hookwire_core::{Secret, Subscription};
use hookwire_store::{Change, DeadLetterQuery, Error, SCHEMA_VERSION, Store};
use uuid::Uuid;

mod attempts;
mod broken;
mod delivery_options;
mod durability;
mod keys;
mod payloads;
mod replicated;
mod size;

const KEY: [u8; 32] = [42; 32];

fn sub(org: &str, events: &[&str]) -> Subscription {
    let events = events.iter().map(|e| (*e).to_owned()).collect();
    let mut sub = Subscription::new(
        org,
        "https://example.com/hook",
        "test",
        events,
        Secret::generate().expect("rng"),
        1,
    );
    sub.max_concurrency = Some(4);
    sub
}

fn open(dir: &tempfile::TempDir) -> Store {
    retry_lock(|| Store::open(dir.path(), 1 << 20, &KEY)).expect("store opens")
}

/// Opens again until sled's lock is free: a dropped store's background threads release
/// it a moment later.
fn retry_lock<T>(mut open: impl FnMut() -> hookwire_store::Result<T>) -> hookwire_store::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(Error::Sled(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Asserts that the closed store in `dir` records this build's schema version.
fn assert_schema_is_current(dir: &std::path::Path) {
    let db = retry_lock(|| Ok(sled::open(dir)?)).expect("sled");
    let version = db.get("schema_version").expect("get").expect("version");
    assert_eq!(
        version.as_ref(),
        hookwire_store::SCHEMA_VERSION.to_be_bytes()
    );
}

#[test]
fn resolves_subscribers_by_org_and_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let a = sub("acme", &["report_created", "report_run_started"]);
    let b = sub("acme", &["report_created"]);
    let other_org = sub("globex", &["report_created"]);
    for s in [&a, &b, &other_org] {
        store.apply(Change::Upsert(s.clone())).expect("apply");
    }
    fn ids<S: std::borrow::Borrow<Subscription>>(v: &[S]) -> Vec<Uuid> {
        v.iter().map(|s| s.borrow().id).collect()
    }
    assert_eq!(
        ids(&store.subscribers("acme", "report_created").expect("lookup")),
        [a.id, b.id]
    );
    assert_eq!(
        ids(&store
            .subscribers("acme", "report_run_started")
            .expect("lookup")),
        [a.id]
    );
    assert_eq!(
        ids(&store
            .subscribers("globex", "report_created")
            .expect("lookup")),
        [other_org.id]
    );
    assert!(
        store
            .subscribers("acme", "definition_created")
            .expect("lookup")
            .is_empty()
    );
    assert_eq!(store.get("acme", &a.id).expect("get"), Some(a.clone()));
    assert_eq!(
        store.get("globex", &a.id).expect("get"),
        None,
        "org scoping"
    );
    assert_eq!(ids(&store.list("acme").expect("list")), [a.id, b.id]);
}

#[test]
fn every_write_reaches_the_cached_subscriber_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut a = sub("acme", &["report_created"]);
    let other_org = sub("globex", &["report_created"]);
    for s in [&a, &other_org] {
        store.apply(Change::Upsert(s.clone())).expect("apply");
    }
    let lookup = |org: &str| store.subscribers(org, "report_created").expect("lookup");
    // Fill the cache, then change the record behind it in each way a write can.
    assert_eq!(lookup("acme")[0].url, a.url);
    let globex_before = lookup("globex");
    let b = sub("acme", &["report_created"]);
    store.apply(Change::Upsert(b.clone())).expect("apply");

    a.url = "https://example.com/moved".into();
    store.apply(Change::Upsert(a.clone())).expect("apply");
    assert_eq!(lookup("acme")[0].url, "https://example.com/moved", "upsert");

    store
        .apply(Change::RecordHealth {
            org: "acme".into(),
            id: a.id,
            delivered: false,
            at_ms: 42,
        })
        .expect("apply");
    let b_before = lookup("acme")[1].clone();
    assert_eq!(b_before.id, b.id);
    store
        .apply(Change::RecordHealth {
            org: "acme".into(),
            id: a.id,
            delivered: false,
            at_ms: 43,
        })
        .expect("apply");
    let after = lookup("acme");
    assert_eq!(
        (after[0].failing_since_ms, after[0].consecutive_failures),
        (Some(42), 2),
        "health"
    );
    // A health write patches its webhook's entry: the others are not decoded again.
    assert!(std::sync::Arc::ptr_eq(&b_before, &after[1]), "b kept");

    for id in [a.id, b.id] {
        store
            .apply(Change::Delete {
                org: "acme".into(),
                id,
            })
            .expect("apply");
    }
    assert!(lookup("acme").is_empty(), "delete");

    assert!(
        std::sync::Arc::ptr_eq(&globex_before, &lookup("globex")),
        "another org's cached list is kept"
    );
}

#[test]
fn a_delivery_finds_its_webhook_in_the_cached_list_or_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let subs: Vec<Subscription> = (0..40).map(|_| sub("acme", &["report_created"])).collect();
    for s in &subs {
        store.apply(Change::Upsert(s.clone())).expect("apply");
    }
    // Not cached yet: read on its own, and the cache is left as it was.
    let read = store
        .subscriber("acme", "report_created", &subs[7].id)
        .expect("lookup")
        .expect("found");
    assert_eq!(*read, subs[7]);
    let list = store.subscribers("acme", "report_created").expect("lookup");
    assert!(!list.iter().any(|s| std::sync::Arc::ptr_eq(s, &read)));
    // Cached: every webhook is the list's own entry, found by its id.
    for s in &subs {
        let found = store
            .subscriber("acme", "report_created", &s.id)
            .expect("lookup")
            .expect("found");
        assert_eq!(found.id, s.id);
        assert!(
            list.iter()
                .any(|entry| std::sync::Arc::ptr_eq(entry, &found))
        );
    }
    // One disabled since, or no longer listening: read as it is now.
    let mut disabled = subs[3].clone();
    disabled.enabled = false;
    store.apply(Change::Upsert(disabled)).expect("apply");
    store.subscribers("acme", "report_created").expect("refill");
    let found = store
        .subscriber("acme", "report_created", &subs[3].id)
        .expect("lookup")
        .expect("found");
    assert!(!found.enabled);
    let elsewhere = store
        .subscriber("acme", "report_run_started", &subs[4].id)
        .expect("lookup")
        .expect("found");
    assert!(!elsewhere.listens_to("report_run_started"));
    assert_eq!(
        store
            .subscriber("globex", "report_created", &subs[4].id)
            .expect("lookup"),
        None,
        "org scoping"
    );
}

#[test]
fn upsert_moves_the_index_and_delete_clears_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut s = sub("acme", &["report_created"]);
    store.apply(Change::Upsert(s.clone())).expect("apply");
    s.events = vec!["definition_created".into()];
    store.apply(Change::Upsert(s.clone())).expect("apply");
    assert!(
        store
            .subscribers("acme", "report_created")
            .expect("lookup")
            .is_empty()
    );
    assert_eq!(
        store
            .subscribers("acme", "definition_created")
            .expect("lookup")
            .len(),
        1
    );
    s.enabled = false;
    store.apply(Change::Upsert(s.clone())).expect("apply");
    assert!(
        store
            .subscribers("acme", "definition_created")
            .expect("lookup")
            .is_empty(),
        "disabled"
    );
    store
        .apply(Change::Delete {
            org: "acme".into(),
            id: s.id,
        })
        .expect("delete");
    assert_eq!(store.get("acme", &s.id).expect("get"), None);
    assert!(matches!(
        store.apply(Change::Delete {
            org: "acme".into(),
            id: s.id
        }),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn secrets_are_encrypted_at_rest_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = sub("acme", &["report_created"]);
    let whsec = s.keys[0].secret.to_whsec();
    let encoded = whsec.trim_start_matches("whsec_").to_owned();
    {
        let store = open(&dir);
        store.apply(Change::Upsert(s.clone())).expect("apply");
        store.flush().expect("flush");
    }
    for entry in std::fs::read_dir(dir.path()).expect("read dir").flatten() {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).expect("read");
            for needle in [encoded.as_bytes(), s.keys[0].secret.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "secret found in {:?}",
                    entry.path()
                );
            }
        }
    }
    let store = open(&dir);
    assert_eq!(
        store
            .get("acme", &s.id)
            .expect("get")
            .expect("present")
            .keys[0]
            .secret
            .to_whsec(),
        whsec
    );
    drop(store);
    // A wrong key no longer opens the store at all (its canary): see `keys.rs`.
    assert!(matches!(
        retry_lock(|| Store::open(dir.path(), 1 << 20, &[1; 32])),
        Err(Error::WrongKey)
    ));
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = sled::open(dir.path()).expect("sled");
        db.insert("schema_version", &(SCHEMA_VERSION + 1).to_be_bytes())
            .expect("insert");
        db.flush().expect("flush");
    }
    match retry_lock(|| Store::open(dir.path(), 1 << 20, &KEY)) {
        Err(Error::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION))
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn writer_group_commits_concurrent_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let writer = hookwire_store::Writer::spawn(store.clone());
    let subs: Vec<Subscription> = (0..50).map(|_| sub("acme", &["report_created"])).collect();
    let commits = subs
        .iter()
        .map(|s| writer.commit(Change::Upsert(s.clone())));
    for result in futures_util::future::join_all(commits).await {
        result.expect("committed");
    }
    assert_eq!(store.list("acme").expect("list").len(), 50);
    let missing = writer
        .commit(Change::Delete {
            org: "acme".into(),
            id: Uuid::now_v7(),
        })
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound(_))),
        "a failed change reports its own error"
    );
}

fn attempt(sub: &Uuid, n: u32, at_ms: u64, outcome: &str) -> hookwire_store::AttemptRecord {
    hookwire_store::AttemptRecord {
        subscription_id: *sub,
        event_id: "e1".into(),
        message_id: "msg_1".into(),
        attempt: n,
        at_ms,
        outcome: outcome.into(),
        status: Some(if outcome == "delivered" { 200 } else { 500 }),
        latency_ms: 3,
        error_kind: None,
        error: None,
        response_excerpt: String::new(),
        transformed: None,
    }
}

#[test]
fn attempt_log_pages_filters_and_prunes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut records: Vec<_> = (1..=5)
        .map(|n| {
            attempt(
                &a,
                n,
                1000 * u64::from(n),
                if n == 5 { "delivered" } else { "retry" },
            )
        })
        .collect();
    records.push(attempt(&b, 1, 1500, "delivered"));
    store
        .apply(Change::RecordAttempts(records))
        .expect("record");

    let query = |q: hookwire_store::AttemptQuery| store.attempts(&a, &q).expect("query");
    let first = query(hookwire_store::AttemptQuery {
        limit: 2,
        ..Default::default()
    });
    assert_eq!(
        first.items.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    let second = query(hookwire_store::AttemptQuery {
        limit: 2,
        cursor: first.next_cursor.clone(),
        ..Default::default()
    });
    assert_eq!(
        second.items.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [3, 4]
    );
    let third = query(hookwire_store::AttemptQuery {
        limit: 2,
        cursor: second.next_cursor.clone(),
        ..Default::default()
    });
    assert_eq!(
        third.items.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [5]
    );
    assert_eq!(third.next_cursor, None);
    let delivered = query(hookwire_store::AttemptQuery {
        limit: 10,
        outcome: Some("delivered".into()),
        ..Default::default()
    });
    assert_eq!(delivered.items.len(), 1);
    let window = query(hookwire_store::AttemptQuery {
        limit: 10,
        since_ms: Some(2000),
        until_ms: Some(4000),
        ..Default::default()
    });
    assert_eq!(
        window.items.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(
        matches!(
            store.attempts(
                &b,
                &hookwire_store::AttemptQuery {
                    limit: 1,
                    cursor: first.next_cursor,
                    ..Default::default()
                }
            ),
            Err(Error::InvalidCursor(_))
        ),
        "a cursor of another webhook is refused"
    );

    store
        .apply(Change::PruneAttempts {
            older_than_ms: 2000,
            keep_per_webhook: 3,
        })
        .expect("prune");
    let left = query(hookwire_store::AttemptQuery {
        limit: 10,
        ..Default::default()
    });
    assert_eq!(
        left.items.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [3, 4, 5],
        "newest three kept"
    );
    assert!(
        store
            .attempts(
                &b,
                &hookwire_store::AttemptQuery {
                    limit: 10,
                    ..Default::default()
                }
            )
            .expect("b")
            .items
            .is_empty(),
        "older than the cutoff"
    );
}

#[test]
fn attempt_log_pages_and_prunes_across_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    // Two batches, each with more of `a`'s attempts than one chunk holds, interleaved
    // with another webhook's and out of time order.
    for batch in 0..2u32 {
        let mut records: Vec<_> = (1..=150u32)
            .rev()
            .flat_map(|n| {
                let n = batch * 150 + n;
                [
                    attempt(&a, n, 10 * u64::from(n), "delivered"),
                    attempt(&b, n, 10 * u64::from(n), "retry"),
                ]
            })
            .collect();
        records.swap(0, 7);
        store
            .apply(Change::RecordAttempts(records))
            .expect("record");
    }
    let all_pages = |sub: &Uuid| {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .attempts(
                    sub,
                    &hookwire_store::AttemptQuery {
                        limit: 7,
                        cursor,
                        ..Default::default()
                    },
                )
                .expect("page");
            seen.extend(page.items.iter().map(|r| r.attempt));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return seen,
            }
        }
    };
    assert_eq!(
        all_pages(&a),
        (1..=300).collect::<Vec<_>>(),
        "every attempt once, in order"
    );

    store
        .apply(Change::PruneAttempts {
            older_than_ms: 0,
            keep_per_webhook: 100,
        })
        .expect("prune");
    assert_eq!(
        all_pages(&a),
        (201..=300).collect::<Vec<_>>(),
        "the newest 100"
    );
    store
        .apply(Change::PruneAttempts {
            older_than_ms: 2905,
            keep_per_webhook: 100,
        })
        .expect("prune");
    assert_eq!(
        all_pages(&b),
        (291..=300).collect::<Vec<_>>(),
        "younger than the cutoff"
    );
}

fn dead_letter(org: Option<&str>, sub: Option<Uuid>, at: u64) -> hookwire_store::DeadLetter {
    hookwire_store::DeadLetter {
        id: Uuid::now_v7(),
        org: org.map(str::to_owned),
        subscription_id: sub,
        event_id: Some("e1".into()),
        event_type: Some("report_created".into()),
        reason: "exhausted".into(),
        detail: "10 attempts".into(),
        attempts: 10,
        dead_at_ms: at,
        body: b"{\"event\":\"report_created\"}".to_vec(),
        body_bytes: 26,
        truncated: false,
        traceparent: None,
        tracestate: None,
        transformed: None,
    }
}

fn archive(store: &Store, letters: &[&hookwire_store::DeadLetter]) {
    for d in letters {
        store
            .apply(Change::ArchiveDeadLetter((*d).clone()))
            .expect("archive");
    }
}

/// Every letter of `org` that `query` selects, following the cursors.
fn dead_letters(
    store: &Store,
    org: Option<&str>,
    mut query: DeadLetterQuery,
) -> Vec<hookwire_store::DeadLetter> {
    let mut all = Vec::new();
    loop {
        let page = store.dead_letters(org, &query).expect("list");
        assert!(
            page.items.len() <= query.limit,
            "a page holds at most its limit"
        );
        all.extend(page.items);
        match page.next_cursor {
            Some(next) => query.cursor = Some(next),
            None => return all,
        }
    }
}

#[test]
fn dead_letters_by_org_query_and_removal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let sub_id = Uuid::now_v7();
    let (d1, d2, d3, orgless) = (
        dead_letter(Some("acme"), Some(sub_id), 10),
        dead_letter(Some("acme"), None, 20),
        dead_letter(Some("globex"), None, 30),
        dead_letter(None, None, 40),
    );
    archive(&store, &[&d1, &d2, &d3, &orgless]);
    let all = DeadLetterQuery::default;
    assert_eq!(
        dead_letters(&store, Some("acme"), all()),
        [d1.clone(), d2.clone()]
    );
    assert_eq!(dead_letters(&store, None, all()), [orgless]);
    let by_sub = DeadLetterQuery {
        subscription_id: Some(sub_id),
        ..all()
    };
    assert_eq!(
        dead_letters(&store, Some("acme"), by_sub),
        std::slice::from_ref(&d1)
    );
    let since = DeadLetterQuery {
        since_ms: Some(15),
        ..all()
    };
    assert_eq!(
        dead_letters(&store, Some("acme"), since),
        std::slice::from_ref(&d2)
    );
    store
        .apply(Change::RemoveDeadLetters {
            org: Some("acme".into()),
            ids: vec![d1.id, d3.id],
        })
        .expect("remove");
    assert_eq!(dead_letters(&store, Some("acme"), all()), [d2]);
    assert_eq!(
        dead_letters(&store, Some("globex"), all()).len(),
        1,
        "only the org's own ids are removed"
    );
}

#[test]
fn dead_letters_are_listed_a_page_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let sub_id = Uuid::now_v7();
    // Every third letter is the webhook's: a filtered page skips the others.
    let letters: Vec<_> = (0..10)
        .map(|i| dead_letter(Some("acme"), (i % 3 == 0).then_some(sub_id), i))
        .collect();
    archive(&store, &letters.iter().collect::<Vec<_>>());
    archive(&store, &[&dead_letter(Some("acmf"), None, 99)]);

    let first = store
        .dead_letters(
            Some("acme"),
            &DeadLetterQuery {
                limit: 4,
                ..DeadLetterQuery::default()
            },
        )
        .expect("page");
    assert_eq!(first.items, letters[..4]);
    assert_eq!(first.next_cursor, Some(letters[3].id.to_string()));
    let paged = |limit| {
        dead_letters(
            &store,
            Some("acme"),
            DeadLetterQuery {
                limit,
                ..DeadLetterQuery::default()
            },
        )
    };
    for limit in [1, 3, 10, 11] {
        assert_eq!(
            paged(limit),
            letters,
            "limit {limit}: every letter once, in order"
        );
    }
    let mine = dead_letters(
        &store,
        Some("acme"),
        DeadLetterQuery {
            subscription_id: Some(sub_id),
            limit: 2,
            ..DeadLetterQuery::default()
        },
    );
    let expected: Vec<_> = letters.iter().step_by(3).cloned().collect();
    assert_eq!(mine, expected);

    // A page read after the previous page's letters were removed (a replay) goes on.
    store
        .apply(Change::RemoveDeadLetters {
            org: Some("acme".into()),
            ids: letters[..4].iter().map(|d| d.id).collect(),
        })
        .expect("remove");
    let rest = store
        .dead_letters(
            Some("acme"),
            &DeadLetterQuery {
                cursor: first.next_cursor,
                ..DeadLetterQuery::default()
            },
        )
        .expect("page");
    assert_eq!(rest.items, letters[4..]);

    let bad = store.dead_letters(
        Some("acme"),
        &DeadLetterQuery {
            cursor: Some("not-an-id".into()),
            ..DeadLetterQuery::default()
        },
    );
    assert!(
        matches!(bad, Err(hookwire_store::Error::InvalidCursor(_))),
        "{bad:?}"
    );
}

#[test]
fn dead_letter_retention_drops_the_old_and_each_orgs_oldest_beyond_the_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    // Ids carry the archive time: three letters from 2023, the rest from now.
    let at = |secs| Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, 0));
    let old: Vec<_> = (0..3)
        .map(|i| hookwire_store::DeadLetter {
            id: at(1_700_000_000 + i),
            ..dead_letter(Some("acme"), None, 0)
        })
        .collect();
    let acme: Vec<_> = (0..5).map(|_| dead_letter(Some("acme"), None, 0)).collect();
    let globex: Vec<_> = (0..2)
        .map(|_| dead_letter(Some("globex"), None, 0))
        .collect();
    let orgless: Vec<_> = (0..6).map(|_| dead_letter(None, None, 0)).collect();
    for group in [&old, &acme, &globex, &orgless] {
        archive(&store, &group.iter().collect::<Vec<_>>());
    }
    let all = |org| dead_letters(&store, org, DeadLetterQuery::default());

    store
        .apply(Change::PruneDeadLetters {
            older_than_ms: 1_700_000_001_500,
            keep_per_org: 100,
        })
        .expect("prune by age");
    let mut young = old[2..].to_vec();
    young.extend(acme.iter().cloned());
    assert_eq!(
        all(Some("acme")),
        young,
        "the two older than the cutoff went"
    );

    store
        .apply(Change::PruneDeadLetters {
            older_than_ms: 0,
            keep_per_org: 4,
        })
        .expect("prune by count");
    assert_eq!(all(Some("acme")), acme[1..], "acme keeps its newest four");
    assert_eq!(all(Some("globex")), globex, "globex is under the count");
    assert_eq!(
        all(None),
        orgless[2..],
        "letters without an org count as one org"
    );
}

#[test]
fn dead_letters_are_selected_without_their_bodies_and_read_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let sub = Uuid::now_v7();
    let big = hookwire_store::DeadLetter {
        body: vec![b'x'; 64 * 1024],
        body_bytes: 4 << 20,
        truncated: true,
        ..dead_letter(Some("acme"), Some(sub), 10)
    };
    let small = dead_letter(Some("acme"), None, 20);
    archive(&store, &[&big, &small]);
    let records = dead_letters(
        &store,
        Some("acme"),
        DeadLetterQuery {
            bodies: false,
            ..DeadLetterQuery::default()
        },
    );
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|d| d.body.is_empty()), "no bodies read");
    assert_eq!(
        (records[0].body_bytes, records[0].truncated),
        (4 << 20, true)
    );
    let filtered = dead_letters(
        &store,
        Some("acme"),
        DeadLetterQuery {
            subscription_id: Some(sub),
            bodies: false,
            ..DeadLetterQuery::default()
        },
    );
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, big.id);
    let one = store
        .dead_letter(Some("acme"), &big.id)
        .expect("read")
        .expect("found");
    assert!(one == big, "one letter with its whole archived body");
    assert_eq!(store.dead_letter(None, &big.id).expect("read"), None);
}
mod cas;
