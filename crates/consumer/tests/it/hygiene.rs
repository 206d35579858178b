//! Response hygiene against misbehaving raw-TCP receivers on loopback: at most 4 KiB of a
//! body is read, a trickled head or body is cut off at the timeout, and an endless body or
//! head is abandoned after a bounded number of bytes instead of being read into memory.

use std::time::{Duration, Instant};

use hookwire_core::{AttemptFailure, Outcome, TargetPolicy};
use hookwire_http::{AttemptReport, Deliverer, DelivererConfig, MAX_RESPONSE_BYTES};
use hookwire_testkit::misbehaving::{Misbehaviour, RawReceiver};
use hookwire_testkit::new_subscription;

const BODY: &[u8] = br#"{"event":"report_created","report_run_url":"https://mode.test/r/1"}"#;
/// Short, so the trickle tests are quick; the attempt's whole budget.
const TIMEOUT: Duration = Duration::from_millis(1500);
/// Room for scheduling on a busy 2-core CI machine, on top of [`TIMEOUT`].
const SLACK: Duration = Duration::from_secs(2);
/// What the receiver may manage to write before hookwire closes on it: the client's
/// receive buffer, hyper's read buffer (its head limit is about 400 KiB) and the receiver's
/// small send buffer. Measured on loopback: about 130 KiB for a body, 460 KiB for a head.
/// A client that read on would take the receiver's whole write budget (256 MiB).
const MAX_BYTES_BEFORE_CLOSE: u64 = 1 << 20;

async fn attempt(receiver: &RawReceiver) -> AttemptReport {
    let deliverer = Deliverer::new(DelivererConfig {
        policy: TargetPolicy::loopback_only(),
        timeout: TIMEOUT,
        ca_pem: None,
        retry_client_errors: false,
        proxy: None,
    })
    .expect("deliverer builds");
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    deliverer.attempt(&sub, "msg_hygiene", BODY).await
}

fn answer(status: u16, body: Vec<u8>) -> Misbehaviour {
    Misbehaviour::Answer {
        status,
        headers: Vec::new(),
        body,
    }
}

#[tokio::test]
async fn at_most_4_kib_of_a_large_body_is_kept_and_the_status_decides() {
    let big = 256 * 1024;
    for (status, outcome) in [
        (200, Outcome::Delivered),
        (503, Outcome::Retry { after: None }),
        (400, Outcome::Permanent),
    ] {
        let receiver = RawReceiver::start(answer(status, vec![b'a'; big])).await;
        let report = attempt(&receiver).await;
        assert_eq!(report.status, Some(status));
        assert_eq!(report.outcome, outcome, "{status}");
        assert_eq!(
            report.response_excerpt.len(),
            MAX_RESPONSE_BYTES,
            "exactly the cap is kept"
        );
        assert!(report.response_excerpt.bytes().all(|b| b == b'a'));
    }
}

#[tokio::test]
async fn the_excerpt_stays_within_4_kib_whatever_the_body_encodes() {
    // Three-byte characters cut at the cap, and bytes that are not UTF-8 at all (each
    // decoded as a three-byte U+FFFD), must not push the excerpt past 4 KiB.
    let bodies = [
        "€".repeat(30_000).into_bytes(),
        vec![0xff; 30_000],
        [b"ok ".as_slice(), &[0xc3; 10_000]].concat(),
    ];
    for body in bodies {
        let first = body[0];
        let receiver = RawReceiver::start(answer(200, body)).await;
        let report = attempt(&receiver).await;
        assert_eq!(report.outcome, Outcome::Delivered);
        assert!(
            report.response_excerpt.len() <= MAX_RESPONSE_BYTES,
            "body starting {first:#x}: excerpt of {} bytes",
            report.response_excerpt.len()
        );
        assert!(!report.response_excerpt.is_empty());
    }
}

#[tokio::test]
async fn a_trickled_head_is_cut_off_at_the_timeout() {
    let receiver = RawReceiver::start(Misbehaviour::TrickleHead {
        every: Duration::from_millis(500),
    })
    .await;
    let started = Instant::now();
    let report = attempt(&receiver).await;
    let took = started.elapsed();
    assert_eq!(report.failure, Some(AttemptFailure::Timeout), "{report:?}");
    assert_eq!(report.outcome, Outcome::Retry { after: None });
    assert_eq!(report.status, None);
    assert!(
        took >= TIMEOUT - Duration::from_millis(100),
        "took {took:?}"
    );
    assert!(took < TIMEOUT + SLACK, "took {took:?}");
    assert!(
        receiver.wait_client_closed(Duration::from_secs(5)).await,
        "the connection was closed, not left open"
    );
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_at_the_timeout_and_the_status_stands() {
    let len = 1000;
    let receiver = RawReceiver::start(Misbehaviour::TrickleBody {
        every: Duration::from_millis(100),
        len,
    })
    .await;
    let started = Instant::now();
    let report = attempt(&receiver).await;
    let took = started.elapsed();
    assert_eq!(report.status, Some(200), "{report:?}");
    assert_eq!(report.outcome, Outcome::Delivered);
    assert!(took < TIMEOUT + SLACK, "took {took:?}");
    assert!(
        report.response_excerpt.len() < len,
        "only what arrived in time is kept"
    );
    assert!(
        receiver.wait_client_closed(Duration::from_secs(5)).await,
        "the connection was closed, not left open"
    );
}

#[tokio::test]
async fn an_endless_body_is_abandoned_after_the_cap() {
    let receiver = RawReceiver::start(Misbehaviour::EndlessBody).await;
    let started = Instant::now();
    let report = attempt(&receiver).await;
    let took = started.elapsed();
    assert_eq!(report.status, Some(200), "{report:?}");
    assert_eq!(report.outcome, Outcome::Delivered);
    assert_eq!(report.response_excerpt.len(), MAX_RESPONSE_BYTES);
    assert!(
        took < TIMEOUT,
        "returned once the cap was read, took {took:?}"
    );
    assert!(
        receiver.wait_client_closed(Duration::from_secs(5)).await,
        "hookwire closed the connection"
    );
    let written = receiver.bytes_written();
    assert!(
        written < MAX_BYTES_BEFORE_CLOSE,
        "the receiver wrote {written} bytes before the close"
    );
}

#[tokio::test]
async fn an_endless_head_fails_promptly_after_a_bounded_read() {
    let receiver = RawReceiver::start(Misbehaviour::EndlessHead).await;
    let started = Instant::now();
    let report = attempt(&receiver).await;
    let took = started.elapsed();
    assert_eq!(report.status, None, "{report:?}");
    assert!(
        matches!(
            report.failure,
            Some(AttemptFailure::Other | AttemptFailure::Connect)
        ),
        "{report:?}"
    );
    assert_eq!(report.outcome, Outcome::Retry { after: None });
    assert!(
        took < TIMEOUT,
        "the head limit, not the timeout, ended it: {took:?}"
    );
    assert!(
        receiver.wait_client_closed(Duration::from_secs(5)).await,
        "hookwire closed the connection"
    );
    let written = receiver.bytes_written();
    assert!(
        written < MAX_BYTES_BEFORE_CLOSE,
        "the receiver wrote {written} bytes before the close"
    );
}
