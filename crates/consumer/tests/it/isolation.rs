//! One bad endpoint never slows the rest: per-webhook caps, circuits and deferrals that
//! use no attempts. Asserted with counts, never with timings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hookwire_testkit::{Harness, Receiver, Reply, eventually, new_subscription};

const WAIT: Duration = Duration::from_secs(30);

/// A receiver that answers 200 after `delay`.
async fn slow_receiver(delay: Duration) -> Receiver {
    Receiver::start(move |_, _| Reply {
        status: 200,
        headers: vec![],
        delay,
    })
    .await
}

#[tokio::test]
async fn a_slow_receiver_never_holds_up_a_fast_one() {
    let h = Harness::start(|c| {
        c.delivery.per_endpoint_concurrency = 4;
        c.delivery.shutdown_grace = Duration::from_secs(1);
    })
    .await;
    let slow = slow_receiver(Duration::from_secs(10)).await;
    let fast = Receiver::ok().await;
    h.subscribe_acme(&slow.url());
    h.subscribe_acme(&fast.url());
    const EVENTS: usize = 40;
    h.publish_reports("acme", EVENTS).await;
    fast.wait_for(EVENTS, WAIT).await;
    let slow_seen = slow.requests().len();
    assert!(
        slow_seen <= 4,
        "the slow webhook never has more than its cap in flight: {slow_seen}"
    );
    assert!(
        slow_seen < EVENTS,
        "every fast delivery completed while the slow ones are still pending ({slow_seen} of {EVENTS} started)"
    );
    h.finish().await;
}

#[tokio::test]
async fn an_unfinished_delivery_holds_back_no_other_ack() {
    // Prefetch 2: were the acks of later messages held until the slow one is done, the
    // broker would send no third message while it hangs.
    let h = Harness::start(|c| {
        c.amqp.prefetch = 2;
        c.delivery.timeout = Duration::from_secs(30);
    })
    .await;
    let slow = slow_receiver(Duration::from_secs(8)).await;
    let fast = Receiver::ok().await;
    h.subscribe(&new_subscription(
        "slow-org",
        &slow.url(),
        &["report_created"],
    ));
    h.subscribe(&new_subscription(
        "fast-org",
        &fast.url(),
        &["report_created"],
    ));
    h.publish(
        "slow-org",
        "report_created",
        "evt-slow",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;
    slow.wait_for(1, WAIT).await;
    const EVENTS: usize = 20;
    h.publish_reports("fast-org", EVENTS).await;
    fast.wait_for(EVENTS, WAIT).await;
    assert!(
        slow.answered().is_empty(),
        "every fast delivery completed while the slow one still hangs"
    );
    let events = format!("{}.events", h.namespace());
    eventually(WAIT, "every message acked", || async {
        (hookwire_testkit::Broker::unacked(&events) == 0
            && h.broker.ready(&events).await == 0
            && !slow.answered().is_empty())
        .then_some(())
    })
    .await;
    assert_eq!(fast.requests().len(), EVENTS, "nothing was redelivered");
    assert_eq!(slow.requests().len(), 1, "nothing was redelivered");
    h.finish().await;
}

#[tokio::test]
async fn an_open_circuit_defers_without_requests_until_a_probe_succeeds() {
    let h = Harness::start(|c| {
        c.delivery.circuit_failure_threshold = 3;
        c.delivery.circuit_cool_off = Duration::from_secs(4);
        // Four attempts each: deferrals must not use them up, or the waiting events would be exhausted.
        c.delivery.retry_schedule = vec![Duration::from_millis(500); 3];
    })
    .await;
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::until_fixed(500, &healthy).await;
    h.subscribe_acme_with(&receiver.url(), |s| s.max_concurrency = Some(1));
    for i in 0..3 {
        h.publish_report(&format!("evt-{i}"), &format!("https://mode.test/r/{i}"))
            .await;
    }
    receiver.wait_for(3, WAIT).await;
    // The circuit is open: for two seconds (less than the cool-off) no request is made,
    // although three deliveries keep coming back from the tiers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.requests().len(),
        3,
        "no request while the circuit is open"
    );
    healthy.store(true, Ordering::SeqCst);
    let bodies = |r: &Receiver| {
        r.requests()
            .iter()
            .skip(3)
            .map(|q| q.body.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    eventually(WAIT, "all three delivered after the probe", || async {
        (bodies(&receiver).len() == 3).then_some(())
    })
    .await;
    assert!(h.dead_letters().is_empty(), "deferrals used no attempts");
    h.finish().await;
}

#[tokio::test]
async fn a_delivery_older_than_max_age_is_dead_lettered_as_expired() {
    let h = Harness::start(|c| {
        c.delivery.max_age = Duration::from_secs(1);
        c.delivery.retry_schedule = vec![Duration::from_secs(2)];
    })
    .await;
    let receiver = Receiver::start(|_, _| Reply::status(503)).await;
    h.subscribe_acme(&receiver.url());
    h.publish_report("old", "https://mode.test/r").await;
    h.wait_dead_letter("expired", WAIT).await;
    assert_eq!(
        receiver.requests().len(),
        1,
        "the retry came due too late and was not attempted"
    );
    h.finish().await;
}

/// The bound on deferral by a webhook's own cap: a burst to a webhook with
/// `max_concurrency = 1` and a slow receiver, far more than it takes within the bound.
/// Every delivery is attempted within the bound docs/delivery-semantics.md states: past
/// `circuit_max_deferral` (B) a delivery waits in process for the webhook's next slot, so
/// it is attempted within B, plus one pass through the deferral tier (1.25 × its delay),
/// plus, at cap 1, one attempt timeout for each delivery held ahead of it.
#[tokio::test]
async fn a_burst_to_a_capped_slow_webhook_is_attempted_within_the_deferral_bound() {
    const EVENTS: usize = 16;
    const BOUND: Duration = Duration::from_secs(1);
    const TIER: Duration = Duration::from_millis(200);
    const TIMEOUT: Duration = Duration::from_secs(1);
    let h = Harness::start(|c| {
        c.delivery.circuit_max_deferral = BOUND;
        c.delivery.defer_delay = TIER;
        c.delivery.timeout = TIMEOUT;
    })
    .await;
    // Four a second at most: the burst takes at least 4 s, four times the bound.
    let slow = slow_receiver(Duration::from_millis(250)).await;
    let sub = h.subscribe_acme_with(&slow.url(), |s| s.max_concurrency = Some(1));
    let mut published_ms = std::collections::HashMap::new();
    for i in 0..EVENTS {
        let id = format!("evt-{i}");
        published_ms.insert(id.clone(), hookwire_core::now_ms());
        h.publish_report(&id, "https://mode.test/r").await;
    }
    slow.wait_for(EVENTS, Duration::from_secs(60)).await;
    let attempts = eventually(WAIT, "every attempt recorded", || async {
        let page = h
            .store
            .attempts(
                &sub.id,
                &hookwire_store::AttemptQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .expect("attempts");
        (page.items.len() >= EVENTS).then_some(page.items)
    })
    .await;
    assert_eq!(attempts.len(), EVENTS, "one attempt each: {attempts:?}");
    // The stated bound, and 10 s for the broker and a loaded machine: an event is
    // consumed some time after it is published, and its deferral starts only then.
    let bound = BOUND + TIER.mul_f64(1.25) + TIMEOUT * EVENTS as u32;
    let allowed = (bound + Duration::from_secs(10)).as_millis() as u64;
    let mut past_the_bound = 0;
    for a in &attempts {
        assert_eq!((a.attempt, a.outcome.as_str()), (1, "delivered"), "{a:?}");
        let waited = a.at_ms.saturating_sub(published_ms[&a.event_id]);
        assert!(
            waited <= allowed,
            "{} attempted {waited} ms after it was published",
            a.event_id
        );
        past_the_bound += usize::from(waited > BOUND.as_millis() as u64);
    }
    assert!(
        past_the_bound > 0,
        "the burst outlasts the bound, so some deliveries were held past it"
    );
    // The cap stayed a cap: no attempt started before the previous one ended.
    let mut by_start: Vec<_> = attempts.iter().map(|a| (a.at_ms, a.latency_ms)).collect();
    by_start.sort_unstable();
    for pair in by_start.windows(2) {
        let ((start, latency), (next, _)) = (pair[0], pair[1]);
        assert!(next + 5 >= start + latency, "{by_start:?}");
    }
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());
    h.finish().await;
}
