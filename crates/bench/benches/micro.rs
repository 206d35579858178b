//! Micro-benchmarks of the work hookwire does per event and per delivery:
//! signing (HMAC and Ed25519), decoding and validating an event, a payload filter, and
//! resolving its subscribers in sled.
//!
//! `cargo bench -p hookwire-bench --bench micro` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hookwire_core::event::{self, OrgHeader, RawEvent, webhook_id};
use hookwire_core::signing::signature_header;
use hookwire_core::{Catalog, Ed25519Key, Filter, FilterInput, Secret, Subscription, now_ms};
use hookwire_store::{Change, Store};

const BODY: &[u8] = br#"{"event":"report_run_completed","report_run_url":"https://app.mode.com/acme/reports/8f2c1e0a9b7d/runs/12345"}"#;

fn subscription(org: &str, event: &str) -> Subscription {
    Subscription::new(
        org,
        "https://hooks.example.com/h",
        "bench",
        vec![event.into()],
        Secret::generate().expect("rng"),
        now_ms(),
    )
}

fn signing(c: &mut Criterion) {
    let (a, b) = (
        Secret::generate().expect("rng"),
        Secret::generate().expect("rng"),
    );
    let id = "msg_2f1c9a7be0d34c55a1e8b7f6c3d2e1a0";
    c.bench_function("sign/one_secret", |bench| {
        bench.iter(|| signature_header([&a], black_box(id), 1_700_000_000, black_box(BODY)))
    });
    c.bench_function("sign/rotation_two_secrets", |bench| {
        bench.iter(|| signature_header([&a, &b], black_box(id), 1_700_000_000, black_box(BODY)))
    });
    let key = Ed25519Key::generate().expect("rng");
    c.bench_function("sign/ed25519", |bench| {
        bench.iter(|| key.sign(black_box(id), 1_700_000_000, black_box(BODY)))
    });
    let sub = uuid::Uuid::now_v7();
    c.bench_function("webhook_id", |bench| {
        bench.iter(|| webhook_id(black_box("acme-12345"), black_box(&sub)))
    });
}

fn decoding(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let raw = RawEvent {
        routing_key: "report_run_completed",
        org: OrgHeader::Text("acme"),
        message_id: Some("acme-12345"),
        timestamp_secs: Some(1_700_000_000),
        published_at_ms: Some(1_700_000_000_000),
        body: BODY,
    };
    c.bench_function("decode/valid_event", |bench| {
        bench.iter(|| event::decode(black_box(&raw), &catalog, 64 * 1024).expect("valid"))
    });
    let bad = RawEvent {
        body: br#"{"event":"report_run_completed"}"#,
        ..raw
    };
    c.bench_function("decode/missing_field", |bench| {
        bench.iter(|| event::decode(black_box(&bad), &catalog, 64 * 1024).expect_err("invalid"))
    });
}

fn filtering(c: &mut Criterion) {
    let filter = Filter::parse(
        r#"event_type == "report_run_completed" && body.report_run_url.startsWith("https://app.mode.com/acme/reports/")"#,
    )
    .expect("filter");
    // A fresh input per iteration: the body is decoded once per event, as in the engine.
    c.bench_function("filter/decode_and_match", |bench| {
        bench.iter(|| {
            let input = FilterInput::new("report_run_completed", black_box(BODY));
            filter.matches(&input).expect("matches")
        })
    });
    let input = FilterInput::new("report_run_completed", BODY);
    filter.matches(&input).expect("matches");
    c.bench_function("filter/match_decoded", |bench| {
        bench.iter(|| filter.matches(black_box(&input)).expect("matches"))
    });
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 64 << 20, &[7; 32]).expect("store");
    // 1,000 orgs × 10 subscriptions, then one org with 10 subscribers of one event type.
    let events = [
        "report_created",
        "report_run_started",
        "report_run_completed",
        "definition_created",
        "definition_updated",
    ];
    for i in 0..10_000 {
        let sub = subscription(&format!("org-{:04}", i / 10), events[i % 5]);
        store.apply(Change::Upsert(sub)).expect("upsert");
    }
    for _ in 0..10 {
        store
            .apply(Change::Upsert(subscription("wide", "report_run_completed")))
            .expect("upsert");
    }
    store.flush().expect("flush");
    let mut i = 0usize;
    c.bench_function("subscribers/2_of_10k", |bench| {
        bench.iter_batched(
            || {
                i = (i + 7) % 1000;
                format!("org-{i:04}")
            },
            |org| store.subscribers(&org, "report_created").expect("lookup"),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("subscribers/10_of_10k_wide", |bench| {
        bench.iter(|| {
            store
                .subscribers(black_box("wide"), "report_run_completed")
                .expect("lookup")
        })
    });
    c.bench_function("subscribers/none", |bench| {
        bench.iter(|| {
            store
                .subscribers(black_box("nobody"), "report_run_completed")
                .expect("lookup")
        })
    });
}

criterion_group!(benches, signing, decoding, filtering, lookup);
criterion_main!(benches);
