//! What a store of webhooks takes on disk, written as the API writes them: through the
//! Writer, several commits in flight, each group flushed and synced.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hookwire_store::{Change, Store, Writer};

use super::{KEY, retry_lock, sub};

/// Bytes of every file under `path`.
fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .expect("readable")
        .flatten()
        .map(|e| {
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[tokio::test]
async fn a_store_of_webhooks_stays_near_what_it_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 8 << 20, &KEY).expect("opens");
    let writer = Writer::spawn(store.clone());
    let n = 5_000;
    let mut inflight = FuturesUnordered::new();
    for i in 0..n {
        let mut webhook = sub(&format!("org-{:05}", i / 10), &["report_created"]);
        webhook.max_concurrency = None;
        let writer = writer.clone();
        inflight.push(async move {
            writer
                .commit(Change::Create {
                    sub: webhook,
                    max_per_org: 1_000,
                })
                .await
        });
        if inflight.len() == 64 {
            inflight.next().await.expect("one").expect("created");
        }
    }
    while let Some(done) = inflight.next().await {
        done.expect("created");
    }
    let export: usize = store
        .export(uuid::Uuid::now_v7(), "test")
        .expect("exports")
        .iter()
        .map(|e| e.to_bytes().expect("encodes").len() + 1)
        .sum();
    drop((writer, store));
    // Closed: sled's last flush is on disk.
    drop(retry_lock(|| Store::open(dir.path(), 8 << 20, &KEY)).expect("opens again"));
    let disk = dir_size(dir.path());
    let (per_webhook, per_export) = (disk / n, export / n as usize);
    println!("{disk} B on disk, {per_webhook} B per webhook; export {per_export} B per webhook");
    // A webhook without options leaves its fields at their defaults out of its record:
    // 491 bytes exported here, 713 when they were written.
    assert!(
        per_export < 600,
        "an exported webhook without options takes {per_export} B"
    );
    // sled reclaims a segment once half of it is garbage, and rewrites whole leaves: about
    // twice what the store holds, plus the last segments (512 KiB, about 100 B per webhook
    // here, each). 1,366 to 1,471 B here; 1,786 with the defaults written.
    assert!(
        per_webhook < 1_600,
        "{per_webhook} B on disk per webhook ({per_export} B exported)"
    );
}
