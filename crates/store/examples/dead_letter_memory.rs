//! The RSS of a process that archives the chaos soak's mix of dead letters (one in six a
//! 70 KiB body) into a store with a 16 MiB cache: what the archive costs serve's memory.
//!
//! `cargo run --release -p hookwire-store --example dead_letter_memory -- [LETTERS]`;
//! `KEEP=N` removes the oldest beyond N as it goes, as retention would.
use hookwire_store::{Change, DeadLetter, Store};
use uuid::Uuid;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(12_000, |s| s.parse().unwrap());
    let keep: usize = std::env::var("KEEP")
        .ok()
        .map_or(usize::MAX, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 16 << 20, &[7; 32]).unwrap();
    let mut ids = std::collections::VecDeque::new();
    for i in 0..n {
        let big = i % 6 == 5;
        let body = if big {
            vec![b'x'; 70 * 1024]
        } else {
            vec![b'y'; 300]
        };
        let org = if i % 6 == 1 {
            None
        } else {
            Some("chaos".to_string())
        };
        let d = DeadLetter {
            id: Uuid::now_v7(),
            org: org.clone(),
            subscription_id: None,
            event_id: Some(format!("soak-{i}")),
            event_type: Some("report_run_completed".into()),
            reason: "invalid_json".into(),
            detail: "not JSON".into(),
            attempts: 0,
            dead_at_ms: 0,
            body_bytes: body.len() as u64,
            body,
            truncated: false,
            traceparent: None,
            tracestate: None,
            transformed: None,
        };
        ids.push_back((org, d.id));
        store.apply(Change::ArchiveDeadLetter(d)).unwrap();
        if ids.len() > keep {
            let (org, id) = ids.pop_front().unwrap();
            store
                .apply(Change::RemoveDeadLetters { org, ids: vec![id] })
                .unwrap();
        }
        if i % 5 == 4 {
            store.flush().unwrap();
        }
        if (i + 1) % 2000 == 0 {
            println!("{} letters: RSS {:.1} MiB", i + 1, rss_mib());
        }
    }
}
