//! The circuit breaker judges a failure rate, lets a half-open circuit try deliveries
//! already attempted first, and bounds how long any delivery waits without an attempt:
//! a half-working receiver is not starved, a down one is left alone. The tier watchdog
//! sees nothing on a broker that expires tiers on time.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::{Config, Subscription};
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver, Reply, eventually, new_subscription};

/// Enough that fresh deliveries far outnumber retries when the circuit first opens, as
/// in a burst: with fewer, a single probe often happens to be a retry.
const EVENTS: usize = 300;

/// The retry schedule of these tests: 1.5 s between the first attempt and the last.
fn schedule() -> Vec<Duration> {
    [100, 200, 400, 800].map(Duration::from_millis).to_vec()
}

/// Short windows, so that a test sees several open/half-open cycles.
fn short_circuit(c: &mut Config) {
    c.delivery.retry_schedule = schedule();
    c.delivery.defer_delay = Duration::from_millis(500);
    c.delivery.circuit_failure_threshold = 5;
    c.delivery.circuit_window = Duration::from_secs(5);
    c.delivery.circuit_cool_off = Duration::from_secs(2);
    c.delivery.circuit_half_open_trials = 3;
    c.delivery.circuit_max_deferral = Duration::from_secs(5);
}

/// How long after the last publish every delivery must have settled: the schedule
/// (1.5 s), and twice (a fresh delivery's first attempt, then its retry) the longest
/// deferral (`circuit_max_deferral`, 5 s) plus the tier it waits in (at most 0.8 s × 1.25
/// jitter), plus 10 s for the broker and a loaded CI machine.
const SETTLED_WITHIN: Duration = Duration::from_millis(1_500 + 2 * (5_000 + 1_000) + 10_000);

/// The distinct `webhook-id`s a receiver answered 200.
type Delivered = Arc<Mutex<BTreeSet<String>>>;

/// A receiver that answers `status(request number)`, noting what it answered 200.
async fn tallying(
    status: impl Fn(usize, &str) -> u16 + Send + Sync + 'static,
) -> (Receiver, Delivered) {
    let delivered = Delivered::default();
    let tally = delivered.clone();
    let receiver = Receiver::start(move |n, q| {
        let id = q.header("webhook-id");
        let status = status(n, id);
        if status == 200 {
            tally.lock().expect("lock").insert(id.to_owned());
        }
        Reply::status(status)
    })
    .await;
    (receiver, delivered)
}

fn count(delivered: &Delivered) -> usize {
    delivered.lock().expect("lock").len()
}

/// A receiver behind a load balancer with one bad instance: 500 to each delivery's first
/// attempt, 200 to its retries.
async fn half_working() -> (Receiver, Delivered) {
    let seen = Mutex::new(HashSet::new());
    tallying(move |_, id| {
        let first = seen.lock().expect("lock").insert(id.to_owned());
        if first { 500 } else { 200 }
    })
    .await
}

/// GET the webhook's JSON from the admin API.
async fn webhook_json(h: &Harness, sub: &Subscription) -> serde_json::Value {
    let body = reqwest::Client::new()
        .get(format!("{}/v1/orgs/acme/webhooks/{}", h.api_url(), sub.id))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("GET webhook")
        .bytes()
        .await
        .expect("a body");
    serde_json::from_slice(&body).expect("JSON")
}

async fn half_working_receiver_gets_every_delivery_within_the_bound(failure_rate: f64) {
    let mut h = Harness::start(|c| {
        short_circuit(c);
        c.delivery.circuit_failure_rate = failure_rate;
    })
    .await;
    let healthy = Receiver::ok().await;
    let (flaky, delivered) = half_working().await;
    h.subscribe(&new_subscription(
        "acme",
        &healthy.url(),
        &["report_created"],
    ));
    let flaky_sub = new_subscription("acme", &flaky.url(), &["report_created"]);
    h.subscribe(&flaky_sub);
    // Published while hookwire is down, as after a crash: the backlog is all fresh
    // deliveries, whose first attempts all fail.
    h.stop_daemon().await.expect("stopped");
    h.publish_reports("acme", EVENTS).await;
    h.restart_daemon().await;
    let published = Instant::now();
    while count(&delivered) < EVENTS && published.elapsed() < SETTLED_WITHIN {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(&delivered),
        EVENTS,
        "delivered to the half-working receiver within {SETTLED_WITHIN:?} of the last publish"
    );
    let took = published.elapsed();
    healthy.wait_for(EVENTS, Duration::from_secs(1)).await;
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());
    eprintln!(
        "failure rate {failure_rate}: {EVENTS} deliveries to the half-working receiver settled {} ms after the last publish, {} requests",
        took.as_millis(),
        flaky.requests().len()
    );
    if failure_rate <= 0.5 {
        let json = webhook_json(&h, &flaky_sub).await;
        eprintln!("{json}");
    }
    h.finish().await;
}

#[tokio::test]
async fn a_receiver_that_fails_every_first_attempt_gets_every_delivery_within_the_bound() {
    half_working_receiver_gets_every_delivery_within_the_bound(0.8).await;
}

/// At 50 %, the rate a half-working receiver runs at, the circuit opens over and over:
/// the half-open trials going to retries, and the deferral bound, still settle everything.
#[tokio::test]
async fn a_receiver_that_fails_every_first_attempt_behind_a_strict_circuit_gets_every_delivery_within_the_bound()
 {
    half_working_receiver_gets_every_delivery_within_the_bound(0.5).await;
}

#[tokio::test]
async fn a_receiver_failing_half_at_random_gets_every_delivery_settled_within_the_bound() {
    let h = Harness::start(short_circuit).await;
    // A fixed pseudo-random sequence (xorshift), so a failure replays.
    let state = Mutex::new(0x9E37_79B9_7F4A_7C15_u64);
    let (flaky, delivered) = tallying(move |_, _| {
        let mut s = state.lock().expect("lock");
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        if s.is_multiple_of(2) { 500 } else { 200 }
    })
    .await;
    h.subscribe(&new_subscription("acme", &flaky.url(), &["report_created"]));
    h.publish_reports("acme", EVENTS).await;
    // Five attempts fail together one time in 32: those are dead-lettered as exhausted,
    // which settles them too.
    let settled = || count(&delivered) + h.dead_letters().len();
    eventually(SETTLED_WITHIN, "every delivery settled", || async {
        (settled() == EVENTS).then_some(())
    })
    .await;
    for dead in h.dead_letters() {
        assert_eq!(dead.reason, "exhausted", "{dead:?}");
    }
    h.finish().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_stops_being_attempted_while_its_deliveries_wait() {
    let h = Harness::start(|c| {
        short_circuit(c);
        c.delivery.circuit_cool_off = Duration::from_secs(3);
        // Within this test, no delivery waits long enough to be attempted regardless.
        c.delivery.circuit_max_deferral = Duration::from_secs(600);
        // Enough attempts that none is exhausted within the test.
        c.delivery.retry_schedule = vec![Duration::from_millis(200); 40];
    })
    .await;
    let down = Receiver::start(|_, _| Reply::status(500)).await;
    let sub = new_subscription("acme", &down.url(), &["report_created"]);
    h.subscribe(&sub);
    h.publish_reports("acme", 30).await;
    let open = eventually(Duration::from_secs(30), "the circuit to open", || async {
        let json = webhook_json(&h, &sub).await;
        (json["circuit"]["state"] == "open").then_some(json)
    })
    .await;
    let rate = open["circuit"]["failure_rate"].as_f64().expect("a rate");
    assert!(rate > 0.99, "{open}");
    assert!(
        open["circuit"]["open_until_ms"].as_u64().is_some(),
        "{open}"
    );
    let at_open = down.requests().len();
    // Over 8 s the 30 deliveries come back from their 200 ms tiers some 30 times each.
    // Only the half-open circuit's 3 trials get through, once per cool-off (3 s) and the
    // tier they wait in: at most 3 rounds; plus what was in flight when it opened (at
    // most the webhook's limit, which starts at 8 and only shrinks on failures).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = down.requests().len() - at_open;
    assert!(
        during <= 3 * 3 + 8,
        "{during} attempts while the circuit was open or trying"
    );
    assert!(h.dead_letters().is_empty(), "deferrals used no attempts");
    h.finish().await;
}

#[tokio::test]
async fn a_tier_that_expires_on_time_reports_nothing_overdue() {
    let h = Harness::start(|_| {}).await;
    let retried = Receiver::start(|n, _| Reply::status(if n == 0 { 503 } else { 200 })).await;
    h.subscribe(&new_subscription(
        "acme",
        &retried.url(),
        &["report_created"],
    ));
    h.publish_reports("acme", 1).await;
    retried.wait_for(2, Duration::from_secs(30)).await;
    let metrics = h.metrics().await;
    // Exported at 0 from the start; on a broker that expires tiers on time it stays 0.
    assert!(
        metrics
            .lines()
            .any(|l| l == "hookwire_tier_overdue_total 0"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("overdue"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    h.finish().await;
}

#[tokio::test]
async fn a_webhook_never_attempted_shows_a_closed_circuit() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    let json = webhook_json(&h, &sub).await;
    assert_eq!(json["circuit"]["state"], "closed", "{json}");
    assert_eq!(json["circuit"]["failure_rate"], 0.0, "{json}");
    assert!(json["circuit"]["open_until_ms"].is_null(), "{json}");
    h.finish().await;
}
