//! Each webhook's concurrency limit finds its receiver's capacity: it grows for a slow
//! receiver that takes everything, settles at the knee of one that slows down under
//! load, and backs off on 429 and 503 before it wastes attempts on them. A delivery
//! held back by the limit waits in line for a slot, not in the deferral tier.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hookwire_core::Subscription;
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::overloaded::{Capacity, OverloadedReceiver};
use hookwire_testkit::{Harness, Receiver, Reply, eventually, new_subscription};

/// Publishes `n` events to `org` while hookwire is stopped, then starts it: the queue
/// is drained at the pace hookwire chooses, not at the producer's.
async fn drain(h: &mut Harness, org: &str, n: usize) {
    h.stop_daemon().await.expect("hookwire stops");
    let ids: Vec<String> = (0..n).map(|i| format!("evt-{i}")).collect();
    for chunk in ids.chunks(200) {
        join_all(chunk.iter().map(|id| {
            h.publish(
                org,
                "report_created",
                id,
                "report_run_url",
                "https://mode.test/r",
            )
        }))
        .await;
    }
    h.restart_daemon().await;
}

async fn get(h: &Harness, path: &str) -> String {
    reqwest::Client::new()
        .get(format!("{}{path}", h.api_url()))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("a body")
}

/// The webhook's `circuit` object from the API.
async fn circuit(h: &Harness, sub: &Subscription) -> serde_json::Value {
    let body = get(h, &format!("/v1/orgs/acme/webhooks/{}", sub.id)).await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    json["circuit"].clone()
}

/// The webhook's limit as `/metrics` shows it.
async fn metric_limit(h: &Harness, sub: &Subscription) -> Option<u64> {
    let metrics = get(h, "/metrics").await;
    let series = format!(
        "hookwire_webhook_concurrency_limit{{webhook_id=\"{}\"}} ",
        sub.id
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn median(values: &[usize]) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_at_an_overloaded_receivers_knee_and_wastes_few_attempts() {
    hookwire_testkit::capture_logs();
    // Shipped defaults: a ceiling of 256 per webhook, far above this receiver's knee.
    let mut h = Harness::start(|_| {}).await;
    let receiver = OverloadedReceiver::start(Capacity {
        knee: 16,
        // Slow enough that hookwire's own CPU, shared with the receiver and other tests,
        // is never what limits it: 640 deliveries a second at the knee.
        base: Duration::from_millis(25),
        per_extra: Duration::from_millis(25),
        refuse_past: 40,
        retry_after_secs: Some(1),
    })
    .await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    const EVENTS: usize = 3000;
    drain(&mut h, "acme", EVENTS).await;
    eventually(
        Duration::from_secs(180),
        "every event delivered",
        || async { (receiver.delivered() >= EVENTS).then_some(()) },
    )
    .await;
    let arrivals = receiver.in_flight_at_arrivals();
    let settled = median(&arrivals[arrivals.len() / 2..]);
    let (delivered, refused) = (receiver.delivered(), receiver.refused());
    let wasted = refused as f64 / (delivered + refused) as f64;
    eprintln!(
        "in flight at the receiver: median {settled} over the second half, peak {}; {refused} refused of {}",
        receiver.peak_in_flight(),
        delivered + refused
    );
    assert!(
        (12..=20).contains(&settled),
        "settles within a quarter of the knee (16): median {settled} in flight"
    );
    assert!(
        wasted < 0.01,
        "{refused} attempts answered 429/503 ({wasted:.4})"
    );
    let circuit = circuit(&h, &sub).await;
    let limit = circuit["concurrency_limit"].as_u64().expect("a limit");
    assert!((1..=24).contains(&limit), "{circuit}");
    assert_eq!(circuit["in_flight"].as_u64(), Some(0), "{circuit}");
    assert_eq!(metric_limit(&h, &sub).await, Some(limit), "/metrics agrees");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_one_slow_webhook_waits_in_line_and_its_limit_grows() {
    hookwire_testkit::capture_logs();
    // A delivery parked in the deferral tier would come back only after 30 s.
    let mut h = Harness::start(|c| c.delivery.defer_delay = Duration::from_secs(30)).await;
    let receiver = Receiver::start(|_, _| Reply {
        status: 200,
        headers: vec![],
        delay: Duration::from_millis(100),
    })
    .await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    const EVENTS: usize = 200;
    drain(&mut h, "acme", EVENTS).await;
    let started = Instant::now();
    let requests = receiver.wait_for(EVENTS, Duration::from_secs(20)).await;
    eprintln!("{EVENTS} deliveries in {:?}", started.elapsed());
    // The most requests that arrived within one answer time of each other: in flight.
    let mut at: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    at.sort_unstable();
    let most = (0..at.len())
        .map(|i| at[i..].partition_point(|t| *t < at[i] + Duration::from_millis(90)))
        .max()
        .unwrap_or(0);
    assert!(
        most > 8,
        "the limit grew past its start of 8: at most {most} at once"
    );
    let circuit = circuit(&h, &sub).await;
    assert!(
        circuit["concurrency_limit"].as_u64().expect("a limit") > 8,
        "{circuit}"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhooks_max_concurrency_is_a_hard_ceiling() {
    let mut h = Harness::start(|_| {}).await;
    let receiver = OverloadedReceiver::start(Capacity {
        knee: 1000,
        base: Duration::from_millis(50),
        per_extra: Duration::ZERO,
        refuse_past: 1000,
        retry_after_secs: None,
    })
    .await;
    let mut sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    sub.max_concurrency = Some(3);
    h.subscribe(&sub);
    const EVENTS: usize = 60;
    drain(&mut h, "acme", EVENTS).await;
    eventually(Duration::from_secs(60), "every event delivered", || async {
        (receiver.delivered() >= EVENTS).then_some(())
    })
    .await;
    assert_eq!(receiver.peak_in_flight(), 3, "never more, and it got there");
    assert_eq!(
        circuit(&h, &sub).await["concurrency_limit"].as_u64(),
        Some(3)
    );
    h.finish().await;
}
