//! What keeping event bodies for resending costs the store, per event: the benchmark's
//! fanout1 load (118-byte bodies, one organization, batches of up to 512 as the payload
//! writer gathers them), written as `serve` writes them, with the process's CPU time
//! (every thread, sled's own included) divided by the events kept.
//!
//! `cargo run --release --workspace --example payload_cost -- [EVENTS]`; `FLUSH=1` flushes
//! after each batch as a group commit would; run it under
//! `valgrind --tool=callgrind` for instruction counts.
use hookwire_store::{Change, Payload, Store};

/// utime + stime of this process, every thread, in µs.
fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10_000
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(20_000, |s| s.parse().unwrap());
    let flush = std::env::var("FLUSH").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 16 << 20, &[7; 32]).unwrap();
    let body = br#"{"org":"bench-org","event_type":"report_run_completed","data":{"report_run_url":"https://app.mode.com/bench-org/reports/8f2c1e0a9b7d/runs/1"}}"#[..118].to_vec();
    let start_cpu = cpu_us();
    let start = std::time::Instant::now();
    let mut seq = 0;
    while seq < n {
        let batch: Vec<Payload> = (seq..n.min(seq + 512))
            .map(|i| Payload {
                org: "bench-org".into(),
                event_id: format!("bench-org-{i}"),
                event_type: "report_run_completed".into(),
                received_at_ms: 1_700_000_000_000 + i as u64 / 7,
                published_at_ms: Some(1_700_000_000_000 + i as u64 / 7),
                body_bytes: body.len(),
                body: body.clone(),
            })
            .collect();
        seq += batch.len();
        store.apply(Change::RecordPayloads(batch)).unwrap();
        if flush {
            store.flush().unwrap();
        }
    }
    store.flush().unwrap();
    let (cpu, wall) = (cpu_us() - start_cpu, start.elapsed());
    let (kept, _) = store.payload_stats().unwrap();
    assert_eq!(kept, n);
    println!(
        "{n} events kept (flush per batch: {flush}): {:.1} µs of CPU per event, {:.1} µs of wall time",
        cpu as f64 / n as f64,
        wall.as_micros() as f64 / n as f64
    );
}
