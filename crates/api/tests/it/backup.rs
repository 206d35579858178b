//! `GET /v1/admin/store/export` as a stream: it outlasts `api.header_read_timeout` for a
//! client that keeps reading, is cut short (never ended cleanly) for one that stops
//! reading, and runs one at a time.

use std::time::{Duration, Instant};

use hookwire_store::{Change, DeadLetter, Entry};
use hookwire_testkit::{Harness, eventually};
use reqwest::Method;

use crate::{Api, error_code};

const IDLE: Duration = Duration::from_secs(1);
const PATH: &str = "/v1/admin/store/export";
/// Letters of 64 KiB: about 26 MB of export, more than loopback's socket buffers hold, so
/// the node is still sending when the client pauses.
const LETTERS: usize = 300;
const BODY: usize = 64 * 1024;

fn letter(i: usize) -> DeadLetter {
    DeadLetter {
        id: uuid::Uuid::now_v7(),
        org: Some("acme".into()),
        subscription_id: None,
        event_id: Some(format!("evt-{i}")),
        event_type: Some("report_created".into()),
        reason: "permanent".into(),
        detail: "400".into(),
        attempts: 1,
        dead_at_ms: 1,
        body: vec![b'x'; BODY],
        body_bytes: BODY as u64,
        truncated: false,
        traceparent: None,
        tracestate: None,
        transformed: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_streams_to_a_reader_and_is_cut_short_for_one_that_stops() {
    let h = Harness::start(|c| c.api.header_read_timeout = IDLE).await;
    for i in 0..LETTERS {
        h.store
            .apply(Change::ArchiveDeadLetter(letter(i)))
            .expect("archived");
    }
    let api = Api::new(&h);

    // A reader that pauses often but never for `IDLE` gets the whole export, however
    // much longer than `IDLE` it takes.
    let started = Instant::now();
    let mut response = api
        .request(Method::GET, PATH)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let (status, busy) = api.send(api.request(Method::GET, PATH)).await;
    assert_eq!(
        (status, error_code(&busy)),
        (429, "export_running"),
        "{busy}"
    );
    let mut body = Vec::new();
    let mut paused_at = 0;
    while let Some(chunk) = response.chunk().await.expect("never cut short") {
        body.extend_from_slice(&chunk);
        if body.len() - paused_at > 1 << 20 {
            paused_at = body.len();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let took = started.elapsed();
    assert!(took > 3 * IDLE, "the export took {took:?}");
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), LETTERS);
    for line in lines {
        let entry = Entry::from_bytes(line).expect("an entry");
        assert_eq!(entry.kind(), "archive_dead_letter");
    }
    eprintln!(
        "an export of {} bytes read in {took:?}, paused 200 ms a MiB",
        body.len()
    );

    // A reader that stops for longer than `IDLE` loses the connection: what it reads
    // afterwards ends in an error, never in a clean end.
    let mut response = api
        .request(Method::GET, PATH)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .expect("a chunk")
        .expect("some bytes");
    tokio::time::sleep(4 * IDLE).await;
    let mut read = first.len();
    let cut = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "a stalled export ended cleanly after {read} bytes");
    assert!(read < body.len(), "{read} bytes of {}", body.len());

    // Its export stopped with the connection: the next one runs.
    eventually(
        Duration::from_secs(10),
        "the next export to run",
        || async {
            let response = api.request(Method::GET, PATH).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    h.finish().await;
}
