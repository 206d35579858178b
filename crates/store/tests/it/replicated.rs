//! Entries of the changes stream applied to separate stores: the same entries in the same
//! order leave the same state, refusals included, and each offset is applied once.

use hookwire_store::{Change, DeadLetter, Entry, Error, HealthTransition, ReplicatedChange, Store};

use crate::{open, sub};

/// `change` as the entry a node would publish.
fn entry(store: &Store, change: Change) -> Vec<u8> {
    match store.replicated(change, "node-1").expect("sealed") {
        ReplicatedChange::Replicated(entry) => entry.to_bytes().expect("encoded"),
        ReplicatedChange::Local(change) => panic!("{change:?} stays on its node"),
    }
}

/// Two empty stores, each in a directory of its own (kept while the stores are used).
fn two_stores() -> ([tempfile::TempDir; 2], Store, Store) {
    let dirs = [0, 1].map(|_| tempfile::tempdir().expect("tempdir"));
    let (a, b) = (open(&dirs[0]), open(&dirs[1]));
    (dirs, a, b)
}

fn apply(store: &Store, raw: &[u8], offset: u64) -> hookwire_store::Result<()> {
    store.apply_entry(&Entry::from_bytes(raw).expect("decoded"), offset)
}

#[test]
fn the_same_entries_leave_every_store_alike() {
    let (_dirs, a, b) = two_stores();
    let created = sub("acme", &["report_created"]);
    let mut first = created.clone();
    first.description = "first".into();
    let mut second = created.clone();
    second.description = "second".into();
    let letter = DeadLetter {
        id: uuid::Uuid::now_v7(),
        org: Some("acme".into()),
        subscription_id: Some(created.id),
        event_id: Some("evt-1".into()),
        event_type: Some("report_created".into()),
        reason: "permanent".into(),
        detail: "400".into(),
        attempts: 1,
        dead_at_ms: 5,
        body: b"{}".to_vec(),
        body_bytes: 2,
        truncated: false,
        traceparent: None,
        tracestate: None,
        transformed: None,
    };
    let log = [
        entry(
            &a,
            Change::Create {
                sub: created.clone(),
                max_per_org: 10,
            },
        ),
        entry(
            &a,
            Change::Replace {
                sub: first,
                expected_version: 0,
            },
        ),
        // Written over the same version on another node: refused when applied.
        entry(
            &b,
            Change::Replace {
                sub: second,
                expected_version: 0,
            },
        ),
        entry(&b, Change::ArchiveDeadLetter(letter.clone())),
        entry(
            &a,
            Change::Create {
                sub: sub("acme", &["report_created"]),
                max_per_org: 1,
            },
        ),
    ];
    for store in [&a, &b] {
        let outcomes: Vec<String> = log
            .iter()
            .zip(0u64..)
            .map(|(raw, offset)| match apply(store, raw, offset) {
                Ok(()) => "ok".to_owned(),
                Err(Error::Conflict { .. }) => "conflict".to_owned(),
                Err(Error::LimitReached { .. }) => "limit".to_owned(),
                Err(e) => panic!("{e}"),
            })
            .collect();
        assert_eq!(outcomes, ["ok", "ok", "conflict", "ok", "limit"]);
        assert_eq!(store.applied_offset().expect("offset"), Some(4));
    }
    let (in_a, in_b) = (a.list("acme").expect("a"), b.list("acme").expect("b"));
    assert_eq!(
        in_a, in_b,
        "both stores hold the same webhooks, secrets included"
    );
    assert_eq!(in_a.len(), 1);
    assert_eq!(in_a[0].description, "first");
    assert_eq!(in_a[0].version, 1);
    assert_eq!(
        in_a[0].keys, created.keys,
        "the secret sealed by the writer opens on every node"
    );
    assert_eq!(a.all_dead_letters().expect("a"), vec![letter.clone()]);
    assert_eq!(b.all_dead_letters().expect("b"), vec![letter]);

    // An offset applied already changes nothing: no second version bump.
    apply(&a, &log[1], 1).expect("a no-op");
    assert_eq!(a.list("acme").expect("a")[0].version, 1);
}

#[test]
fn the_applied_offset_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(&dir);
        assert_eq!(store.applied_offset().expect("offset"), None);
        let raw = entry(
            &store,
            Change::Create {
                sub: sub("acme", &["report_created"]),
                max_per_org: 10,
            },
        );
        apply(&store, &raw, 41).expect("applied");
        store.flush().expect("flush");
    }
    assert_eq!(open(&dir).applied_offset().expect("offset"), Some(41));
}

#[test]
fn health_and_attempts_stay_on_their_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let change = Change::RecordHealth {
        org: "acme".into(),
        id: uuid::Uuid::now_v7(),
        delivered: true,
        at_ms: 1,
    };
    assert!(matches!(
        store.replicated(change, "node-1").expect("local"),
        ReplicatedChange::Local(Change::RecordHealth { .. })
    ));
}

fn health(store: &Store, sub: &hookwire_core::Subscription, delivered: bool, at_ms: u64) {
    store
        .apply(Change::RecordHealth {
            org: sub.org.clone(),
            id: sub.id,
            delivered,
            at_ms,
        })
        .expect("health recorded");
}

/// A node notes only flips of its webhooks' failing state, and shares each webhook once
/// however often it flipped; another node takes the shared health without a version
/// change, keeping its own count of consecutive failures.
#[test]
fn health_is_shared_by_its_transitions_only() {
    let (_dirs, a, b) = two_stores();
    a.track_health_transitions();
    let (steady, flapping) = (
        sub("acme", &["report_created"]),
        sub("acme", &["report_created"]),
    );
    for (offset, s) in [&steady, &flapping].into_iter().enumerate() {
        let raw = entry(
            &a,
            Change::Create {
                sub: s.clone(),
                max_per_org: 10,
            },
        );
        apply(&a, &raw, offset as u64).expect("a applies");
        apply(&b, &raw, offset as u64).expect("b applies");
    }
    b.apply(Change::RecordHealth {
        org: "acme".into(),
        id: flapping.id,
        delivered: false,
        at_ms: 1,
    })
    .expect("b's own failure");

    // Successes of a healthy webhook flip nothing: nothing to share.
    for at in 10..20 {
        health(&a, &steady, true, at);
    }
    assert_eq!(a.take_health_transitions(100).expect("taken"), vec![]);

    // Failing, recovered, failing again: one transition, the health as it is now.
    health(&a, &flapping, false, 100);
    health(&a, &flapping, true, 101);
    health(&a, &flapping, false, 102);
    health(&a, &flapping, false, 103);
    let shared = a.take_health_transitions(100).expect("taken");
    assert_eq!(
        shared,
        vec![HealthTransition {
            org: "acme".into(),
            id: flapping.id,
            failing_since_ms: Some(102),
            last_success_ms: Some(101),
        }]
    );
    assert_eq!(a.take_health_transitions(100).expect("taken"), vec![]);

    let raw = entry(&a, Change::ShareHealth(shared.clone()));
    apply(&a, &raw, 2).expect("a applies");
    b.track_health_transitions();
    apply(&b, &raw, 2).expect("b applies");
    let on_b = b.get("acme", &flapping.id).expect("read").expect("stored");
    assert_eq!(on_b.failing_since_ms, Some(102));
    assert_eq!(on_b.last_success_ms, Some(101));
    assert_eq!(on_b.consecutive_failures, 1, "b's own count");
    assert_eq!(on_b.version, 0, "health is not a setting");
    // Taking what another node shared notes nothing to share again.
    assert_eq!(b.take_health_transitions(100).expect("taken"), vec![]);

    // Not shared (the stream was down): noted again, shared next time.
    a.note_health_transitions(&shared);
    assert_eq!(a.take_health_transitions(100).expect("taken"), shared);
}

#[test]
fn an_entry_that_is_not_one_is_refused_when_decoded() {
    assert!(matches!(
        Entry::from_bytes(b"{\"op\":\"nothing\"}"),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn an_export_seeds_a_fresh_store_alike_and_never_merges_with_another() {
    let (_dirs, source, target) = two_stores();
    for s in [
        sub("acme", &["report_created"]),
        sub("globex", &["report_created"]),
    ] {
        source.apply(Change::Upsert(s)).expect("seeded");
    }
    let seed = uuid::Uuid::now_v7();
    let entries = source.export(seed, "node-1").expect("exported");
    assert_eq!(entries.len(), 2);
    let mut offset = 0;
    // A node's mark before the import does not stand in its way.
    target
        .apply_entry(&Entry::mark("node-2"), offset)
        .expect("mark");
    for entry in &entries {
        offset += 1;
        let raw = entry.to_bytes().expect("encoded");
        apply(&target, &raw, offset).expect("imported");
    }
    for org in ["acme", "globex"] {
        assert_eq!(
            target.list(org).expect("target"),
            source.list(org).expect("source")
        );
    }
    // Another import afterwards is refused, on every node alike, and changes nothing.
    let other = source
        .export(uuid::Uuid::now_v7(), "node-3")
        .expect("exported");
    offset += 1;
    assert!(matches!(
        target.apply_entry(&other[0], offset),
        Err(Error::SeedRefused(_))
    ));
    assert_eq!(target.applied_offset().expect("offset"), Some(offset));
    assert_eq!(target.list("acme").expect("target").len(), 1);

    // An import into a store that holds other changes already is refused too.
    let busy_dir = tempfile::tempdir().expect("c");
    let busy = open(&busy_dir);
    let raw = entry(
        &busy,
        Change::Create {
            sub: sub("initech", &["report_created"]),
            max_per_org: 10,
        },
    );
    apply(&busy, &raw, 0).expect("a write");
    assert!(matches!(
        busy.apply_entry(&entries[0], 1),
        Err(Error::SeedRefused(_))
    ));
    assert!(busy.list("acme").expect("busy").is_empty());
}

/// `store restore`: an export written into an empty store without the changes stream
/// leaves the source's webhooks and dead letters, and no replication state.
#[test]
fn a_restore_writes_an_export_without_touching_the_replication_state() {
    let (_dirs, source, target) = two_stores();
    let mut webhook = sub("acme", &["report_created"]);
    webhook.version = 7;
    source.apply(Change::Upsert(webhook)).expect("seeded");
    let letter = DeadLetter {
        id: uuid::Uuid::now_v7(),
        org: Some("acme".into()),
        subscription_id: None,
        event_id: Some("evt-1".into()),
        event_type: Some("report_created".into()),
        reason: "permanent".into(),
        detail: "400".into(),
        attempts: 1,
        dead_at_ms: 5,
        // Over one piece of the archive's bodies.
        body: vec![b'x'; 10_000],
        body_bytes: 10_000,
        truncated: false,
        traceparent: None,
        tracestate: None,
        transformed: None,
    };
    source
        .apply(Change::ArchiveDeadLetter(letter.clone()))
        .expect("archived");
    let entries: Vec<Entry> = source
        .export_entries(uuid::Uuid::now_v7(), "node-1")
        .collect::<hookwire_store::Result<_>>()
        .expect("exported");
    assert_eq!(entries.len(), 2);
    assert!(!target.holds_anything().expect("empty"));
    for entry in &entries {
        target.check_restorable(entry, None).expect("restorable");
        target.restore_entry(entry).expect("restored");
    }
    assert!(target.holds_anything().expect("restored"));
    assert_eq!(
        target.list("acme").expect("target"),
        source.list("acme").expect("source")
    );
    assert_eq!(target.list("acme").expect("target")[0].version, 7);
    let restored = target
        .dead_letter(Some("acme"), &letter.id)
        .expect("readable")
        .expect("restored");
    assert_eq!(restored.body, letter.body);
    assert_eq!(target.applied_offset().expect("offset"), None);

    // Only an export's entries restore, and only under the key that sealed them.
    let create = Entry::from_bytes(&entry(
        &source,
        Change::Create {
            sub: sub("globex", &["report_created"]),
            max_per_org: 10,
        },
    ))
    .expect("decoded");
    assert!(matches!(
        target.restore_entry(&create),
        Err(Error::Refused(_))
    ));
    let other_dir = tempfile::tempdir().expect("c");
    let other_key = Store::open(other_dir.path(), 1 << 20, &[9; 32]).expect("opens");
    assert!(matches!(
        other_key.check_restorable(&entries[0], None),
        Err(Error::Unseal)
    ));
}
