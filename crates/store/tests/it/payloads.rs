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
