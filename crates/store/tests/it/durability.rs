//! What a durable commit costs: sequential commits (each waits for its own flush, as one
//! API write at a time does) and concurrent ones (group commit), in a directory under
//! `HOOKWIRE_STORE_BENCH_DIR` (default: the system's temporary directory). Ignored by
//! default: run it with `--ignored --nocapture` on the disk to measure.

use std::time::Instant;

use hookwire_store::{Change, Store, Writer};

use super::sub;

#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn measure_commit_cost() {
    let base = std::env::var_os("HOOKWIRE_STORE_BENCH_DIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let store = Store::open(dir.path(), 8 << 20, &[3; 32]).expect("opens");
    let writer = Writer::spawn(store);
    let n = 300;
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        writer
            .commit(Change::Upsert(sub("acme", &["report_created"])))
            .await
            .expect("committed");
        latencies.push(t.elapsed());
    }
    let sequential = started.elapsed();
    latencies.sort();
    let concurrent_n = 2000;
    let started = Instant::now();
    let commits =
        (0..concurrent_n).map(|_| writer.commit(Change::Upsert(sub("acme", &["report_created"]))));
    for r in futures_util::future::join_all(commits).await {
        r.expect("committed");
    }
    let concurrent = started.elapsed();
    println!(
        "sequential: {:.0} commits/s, p50 {:?}, p99 {:?}; 2000 concurrent: {:.0} commits/s",
        n as f64 / sequential.as_secs_f64(),
        latencies[n / 2],
        latencies[n * 99 / 100],
        concurrent_n as f64 / concurrent.as_secs_f64(),
    );
}
