//! Bounded fan-out: the global attempt slots are shared fairly between organizations, and
//! a large fan-out still reaches every subscriber. Asserted with counts; the waits are
//! generous bounds, never the assertion.

use std::time::Duration;

use hookwire_testkit::{Harness, Receiver, Recorded, Reply, new_subscription};

const WAIT: Duration = Duration::from_secs(30);

/// One event to `subscribers` webhooks of `acme` at one receiver: what each received.
async fn fan_out(h: &Harness, subscribers: usize) -> Vec<Recorded> {
    let receiver = Receiver::ok().await;
    for _ in 0..subscribers {
        h.subscribe_acme(&receiver.url());
    }
    h.publish_reports("acme", 1).await;
    receiver.wait_for(subscribers, WAIT).await
}

#[tokio::test]
async fn one_org_flooding_slow_receivers_does_not_starve_another() {
    const SLOTS: usize = 2;
    const FLOOD: usize = 40;
    let h = Harness::start(|c| {
        c.delivery.concurrency = SLOTS;
        // Only the global slots limit org A: its one webhook takes every attempt.
        c.delivery.per_endpoint_concurrency = 1000;
        // Every event is taken in at once, so attempts queue for the slots, not the broker.
        c.amqp.prefetch = 500;
        c.delivery.shutdown_grace = Duration::from_secs(1);
    })
    .await;
    // Holds each request 1 s (under the 5 s attempt timeout): A drains at 2 a second.
    let slow = Receiver::start(|_, _| Reply {
        delay: Duration::from_secs(1),
        ..Reply::status(200)
    })
    .await;
    let fast = Receiver::ok().await;
    h.subscribe(&new_subscription("org-a", &slow.url(), &["report_created"]));
    h.subscribe(&new_subscription("org-b", &fast.url(), &["report_created"]));

    h.publish_reports("org-a", FLOOD).await;
    // Both slots are taken by A, and its other attempts wait for them.
    slow.wait_for(SLOTS, WAIT).await;
    h.publish_reports("org-b", 3).await;

    // With slots handed round-robin, B's three attempts each wait about one slot turn
    // (~0.5 s); first come, first served, they would wait for A's whole backlog (~19 s).
    fast.wait_for(3, WAIT).await;
    let a_done = slow.answered().len();
    assert!(
        a_done <= 12,
        "org B's deliveries completed after only a few of A's ({a_done} of {FLOOD} answered)"
    );
    assert!(a_done < FLOOD, "and while A's are still in flight");
    h.finish().await;
}

#[tokio::test]
async fn a_fanout_larger_than_a_publish_chunk_reaches_every_subscriber() {
    // 300 subscribers: 19 chunk messages of 15 or 16 webhooks.
    const SUBSCRIBERS: usize = 300;
    let h = Harness::start(|_| {}).await;
    let got = fan_out(&h, SUBSCRIBERS).await;
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), SUBSCRIBERS, "one delivery to each subscriber");
    h.finish().await;
}

/// A large fan-out publishes one message per chunk of at most `inline_fanout_max` (16)
/// webhooks, and those a window (256) at a time: 700 webhooks make 44 messages, all
/// awaiting their confirms at once; one message per webhook would have had 256.
#[tokio::test]
async fn a_large_fanout_publishes_one_message_per_chunk_of_webhooks() {
    const SUBSCRIBERS: usize = 700;
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    for _ in 0..SUBSCRIBERS {
        h.subscribe_acme(&receiver.url());
    }
    h.publish_reports("acme", 1).await;
    let got = receiver.wait_for(SUBSCRIBERS, WAIT).await;
    let metrics = h.metrics().await;
    let most: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookwire_fanout_publishes_in_flight_max "))
        .expect("the gauge is reported after a fan-out")
        .trim()
        .parse()
        .expect("a number");
    let messages = SUBSCRIBERS.div_ceil(16) as f64;
    assert!(
        (1.0..=messages).contains(&most),
        "{most} messages of one fan-out in flight at once"
    );
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), SUBSCRIBERS, "one delivery to each subscriber");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.requests().len(),
        SUBSCRIBERS,
        "and no more: each chunk delivers to its own webhooks"
    );
    h.finish().await;
}
