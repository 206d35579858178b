//! A node's redelivered messages taken by another node: what the first settled is not
//! made again.

use super::*;

/// An event's deliveries settled on node 1 while another subscriber held the event
/// unacked are not made again when node 1 is SIGKILLed and node 2 takes the event: one
/// answered 2xx, one answered 500 whose retry was scheduled (and then delivered), and one
/// answered 501 and dead-lettered (no delivered attempt: only the record of its attempt,
/// written once the dead letter was confirmed, says it settled). Node 2 finds them in its
/// attempt log, brought by the attempts stream (node 1's journal is not there), and makes
/// only the held one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_a_killed_node_settled_are_not_made_again_by_another() {
    settled_deliveries_stay_settled(&[], 3, 0.0).await;
}

/// The same for a large fan-out: with `delivery.inline_fanout_max` at 3, the four
/// webhooks travel as two chunk messages, [fast, slow] and [flaky, rejecting]; the second
/// is acked once its deliveries settle, and node 2 takes the held first one and makes
/// only its slow delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_of_a_fanout_chunk_a_killed_node_settled_are_not_made_again() {
    settled_deliveries_stay_settled(&[("HOOKWIRE_DELIVERY__INLINE_FANOUT_MAX", "3")], 1, 2.0).await;
}

/// Node 1 (started with `env`) settles deliveries while the slow receiver holds three
/// events, and is SIGKILLed; node 2 must make only the held deliveries, and
/// count `settled_per_held` deliveries of each redelivered message as already settled.
/// Node 1 must have had up to `chunk_messages` chunk messages of one fan-out in flight
/// at once (none: inline deliveries).
async fn settled_deliveries_stay_settled(
    env: &[(&str, &str)],
    settled_per_held: usize,
    chunk_messages: f64,
) {
    const EVENTS: usize = 6;
    /// The slow receiver holds this many first requests open until the kill, so that
    /// many events stay unacked on node 1 after the others have answered them.
    const HELD: usize = 3;
    let fast = Receiver::ok().await;
    let slow = Receiver::holding_first(HELD).await;
    let flaky = Receiver::failing_each_first_attempt().await;
    let rejecting = Receiver::start(|_, _| Reply::status(501)).await;
    let cluster = Cluster::new().await;
    let mut node1 = cluster.start_with(1, env).await;
    let mut hooks = Vec::new();
    for receiver in [&fast, &slow, &flaky, &rejecting] {
        let created = cluster.create(&node1, &receiver.url(), false).await;
        hooks.push(created["id"].as_str().expect("an id").to_owned());
    }
    cluster.publish_runs(0, EVENTS).await;
    fast.wait_for(EVENTS, WAIT).await;
    slow.wait_for(EVENTS, WAIT).await;
    // Each first attempt, then its retry from the tier.
    flaky.wait_for(2 * EVENTS, WAIT).await;
    rejecting.wait_for(EVENTS, WAIT).await;
    assert_eq!(
        slow.answered().len(),
        EVENTS - HELD,
        "the held requests are open"
    );
    // Node 2 joins and holds node 1's attempts (two per flaky delivery), so the kill
    // tests what it finds, not how soon the stream brings it.
    let node2 = cluster.start_with(2, env).await;
    let (fast_hook, flaky_hook, rejecting_hook) = (&hooks[0], &hooks[2], &hooks[3]);
    eventually(WAIT, "node 1's attempts on node 2", || async {
        let fast_listed = attempts_listed(&cluster, &node2, fast_hook).await;
        let flaky_listed = attempts_listed(&cluster, &node2, flaky_hook).await;
        let rejecting_listed = attempts_listed(&cluster, &node2, rejecting_hook).await;
        (fast_listed == EVENTS && flaky_listed == 2 * EVENTS && rejecting_listed == EVENTS)
            .then_some(())
    })
    .await;
    let published = cluster
        .metric(&node1, |l| {
            l.starts_with("hookwire_fanout_publishes_in_flight_max ")
        })
        .await;
    assert!(
        published <= chunk_messages && (published > 0.0) == (chunk_messages > 0.0),
        "{published} chunk messages of one fan-out in flight at once, expected up to {chunk_messages}"
    );
    node1.serve.kill().expect("SIGKILL node 1");

    eventually(WAIT, "the held events answered by node 2", || async {
        let bodies: BTreeSet<_> = slow.answered().iter().map(|r| r.body.to_vec()).collect();
        (bodies.len() == EVENTS).then_some(())
    })
    .await;
    assert_eq!(
        fast.requests().len(),
        EVENTS,
        "no delivery answered on node 1 was made again by node 2"
    );
    assert_eq!(
        flaky.requests().len(),
        2 * EVENTS,
        "no delivery whose retry node 1 scheduled was made again by node 2"
    );
    assert_eq!(
        rejecting.requests().len(),
        EVENTS,
        "no delivery node 1 dead-lettered was made again by node 2"
    );
    let skipped = cluster
        .metric(&node2, |l| {
            l.starts_with(r#"hookwire_deliveries_total{outcome="already_settled"}"#)
        })
        .await;
    assert!(
        skipped >= (settled_per_held * HELD) as f64,
        "each redelivered message's {settled_per_held} settled deliveries are counted on node 2: {skipped}"
    );
    drop(node1);
    cluster.finish(vec![node2]).await;
}

/// How many attempts of webhook `hook` `node` lists.
async fn attempts_listed(cluster: &Cluster, node: &Node, hook: &str) -> usize {
    let path = format!("/v1/orgs/acme/webhooks/{hook}/attempts?limit=500");
    cluster.get(node, &path).await["attempts"]
        .as_array()
        .map_or(0, Vec::len)
}
