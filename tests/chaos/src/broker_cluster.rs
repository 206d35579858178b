//! The `broker-cluster` scenario: a three-node RabbitMQ cluster of the runner's own
//! (`tests/cluster/rabbitmq-cluster`, AMQP ports 5681–5683; the test broker is never
//! touched) under three replicated `serve` nodes given all three URLs. While events flow,
//! the broker node leading the events queue is stopped and started again, one `serve` is
//! SIGKILLed and restarted, then another broker node (the events queue's new leader) is
//! stopped and started. The cluster is torn down whatever happens: the scenario owns it,
//! and dropping the scenario (failure, Ctrl-C) drops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hookwire_core::event::webhook_id;
use hookwire_testkit::RabbitCluster;

use crate::Ctx;
use crate::ledger::{Ledger, Outcome};
use crate::publish::{EVENT, ORG, publish_paced_to};
use crate::scenarios::{consuming_again, note};
use crate::serve::{Daemon, Settings};
use crate::settle::{LastFault, settle_after_faults, stop_and_count};
use crate::sink::{Behavior, Disturbing, Sink};

/// AMQP ports 5681–5683: apart from the test broker (5672) and the ha tests' (5691–5693).
const PORT_BASE: u16 = 5680;
/// The least time a stopped broker node stays down.
const DOWN: Duration = Duration::from_secs(5);
/// How long deliveries may take to resume after a broker node stops before the scenario
/// fails; the node is started again either way.
const RESUME_BOUND: Duration = Duration::from_secs(90);

/// One broker node stopped and started again, and what it cost.
struct BrokerStop {
    node: u16,
    /// How long `rabbitmqctl stop` took.
    stop: Duration,
    /// From the stop's beginning to the first delivery of an event first published once
    /// the node was down; `None`: none within [`RESUME_BOUND`].
    resumed: Option<Duration>,
}

/// Three broker nodes, three `serve` nodes, `events` events to two webhooks (one healthy,
/// one flaky), two broker node stops and a SIGKILL between them. Nothing may be lost,
/// every delivery must settle within the schedule plus 60 s of the last fault, and
/// deliveries must resume while each stopped node is down.
pub async fn broker_cluster(ctx: &Ctx, events: usize) -> Result<Outcome> {
    let t0 = Instant::now();
    // Blocking calls of the cluster run in place, on the runner's own task: an
    // interruption is seen once they return, and then drops the cluster with the
    // scenario, which tears it down.
    let cluster = tokio::task::block_in_place(|| RabbitCluster::start(PORT_BASE))
        .context("starting the RabbitMQ cluster")?;
    let cluster_up_s = t0.elapsed().as_secs_f64();
    let ctx = ctx.on_cluster(cluster.urls());
    let flaky = Sink::start("flaky", ORG, &[EVENT], Behavior::Flaky).await?;
    let healthy = Sink::start("healthy", ORG, &[EVENT], Behavior::Healthy).await?;
    let sinks = [&flaky, &healthy];
    let settings = Settings::default();
    let subs: Vec<_> = sinks.iter().map(|s| s.sub.clone()).collect();
    let mut nodes = Daemon::cluster(&ctx, &settings, &subs, 3).await?;
    for node in &mut nodes {
        node.start().await?;
    }
    let namespace = nodes[0].config.amqp.namespace.clone();
    let events_queue = format!("{namespace}.events");

    let mut ledger = Ledger::default();
    let ids = ledger.expect_events("bcluster", events, &sinks);
    // Long enough that events still flow after the second stop, whatever the size.
    let window = Duration::from_secs_f64((events as f64 / 30.0).max(60.0));
    let next = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(publish_paced_to(
        cluster.urls(),
        namespace.clone(),
        ids.clone(),
        window,
        next.clone(),
    ));
    let mut failures = Vec::new();
    tokio::time::sleep(window / 6).await;

    // Each broker node stop disturbs from the stop until the node is back and every
    // serve node consumes: the ones connected to it reconnect to another.
    let first = tokio::task::block_in_place(|| cluster.leader(&events_queue))?;
    let disturbing = Disturbing::begin(&sinks);
    let mut stops = vec![stop_and_start(&cluster, first, &next, &ids, &sinks).await?];
    all_consuming(&nodes).await;
    disturbing.end();
    // A serve node SIGKILLed between the two stops, restarted at once.
    nodes[1].check_alive()?;
    nodes[1].kill()?;
    let disturbing = Disturbing::begin(&sinks);
    nodes[1].start().await?;
    disturbing.end();
    // Another node: the events queue's leader now, unless it went back to the first.
    let leads = tokio::task::block_in_place(|| cluster.leader(&events_queue))?;
    let second = if leads == first { first % 3 + 1 } else { leads };
    let disturbing = Disturbing::begin(&sinks);
    stops.push(stop_and_start(&cluster, second, &next, &ids, &sinks).await?);
    all_consuming(&nodes).await;
    disturbing.end();
    let last_fault = Instant::now();

    let after = settle_after_faults(
        &mut nodes,
        LastFault {
            at: last_fault,
            publisher,
        },
        &settings,
        &ledger,
        &sinks,
        &mut failures,
        || queue_depths(&cluster, &namespace),
    )
    .await?;
    for stop in &stops {
        if stop.resumed.is_none() {
            failures.push(format!(
                "deliveries did not resume within {RESUME_BOUND:?} of stopping hwc{}",
                stop.node
            ));
        }
    }
    let mut resumed: Vec<Duration> = stops.iter().filter_map(|s| s.resumed).collect();
    resumed.sort();
    let p50 = resumed.get(resumed.len().saturating_sub(1) / 2).copied();
    let secs =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64()));
    eprintln!(
        "broker-cluster: stop → deliveries resumed (events published while the node was down): {}; p50 {} s, max {} s",
        stops
            .iter()
            .map(|s| format!(
                "hwc{} stopped in {:.1} s, resumed {} s after the stop began",
                s.node,
                s.stop.as_secs_f64(),
                secs(s.resumed)
            ))
            .collect::<Vec<_>>()
            .join("; "),
        secs(p50),
        secs(resumed.last().copied()),
    );
    let (tally, kills) = stop_and_count(&mut nodes, &ledger, &sinks, &mut failures).await?;
    if tally.lost > 0 {
        failures.push(format!(
            "queues on the cluster: {}",
            queue_depths(&cluster, &namespace)
        ));
    }
    let outcome = Outcome {
        name: "broker-cluster".into(),
        tally,
        notes: vec![
            note("events", events),
            note("cluster_up_s", format!("{cluster_up_s:.0}")),
            note(
                "broker_stops",
                stops
                    .iter()
                    .map(|s| format!("hwc{}", s.node))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            note(
                "stop_s",
                stops
                    .iter()
                    .map(|s| format!("{:.1}", s.stop.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join("/"),
            ),
            note(
                "resumed_s",
                stops
                    .iter()
                    .map(|s| secs(s.resumed))
                    .collect::<Vec<_>>()
                    .join("/"),
            ),
            note("resumed_p50_s", secs(p50)),
            note("resumed_max_s", secs(resumed.last().copied())),
            note("serve_kills", kills),
            note(
                "settled_s_after_last_fault",
                format!("{:.0}", after.settled_after.as_secs_f64()),
            ),
            note("republished", after.republished),
        ],
        failures,
        wall: t0.elapsed(),
        must_lose: None,
    };
    // The serve nodes are dropped before the cluster, which was declared before them.
    Ok(outcome)
}

/// Waits until every serve node consumes again (a minute at most each).
async fn all_consuming(nodes: &[Daemon]) {
    for node in nodes {
        consuming_again(node, Instant::now()).await;
    }
}

/// Stops broker node `n`, waits until an event first published once it was down is
/// delivered (or [`RESUME_BOUND`]) and at least [`DOWN`], and starts it again.
async fn stop_and_start(
    cluster: &RabbitCluster,
    n: u16,
    next: &AtomicUsize,
    ids: &[String],
    sinks: &[&Sink],
) -> Result<BrokerStop> {
    let stopped_at = Instant::now();
    tokio::task::block_in_place(|| cluster.stop_node(n))?;
    let stop = stopped_at.elapsed();
    // The event being published now may have been sent before the node went down.
    let from = next.load(Ordering::SeqCst) + 1;
    let mut resumed = None;
    while resumed.is_none() && stopped_at.elapsed() < RESUME_BOUND {
        let upto = (next.load(Ordering::SeqCst) + 1).min(ids.len());
        resumed = ids
            .get(from..upto)
            .into_iter()
            .flatten()
            .flat_map(|id| {
                sinks
                    .iter()
                    .filter_map(|s| s.first_delivered(&webhook_id(id, &s.sub.id)))
            })
            .min()
            .map(|at| at.saturating_duration_since(stopped_at));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep_until((stopped_at + DOWN).into()).await;
    tokio::task::block_in_place(|| cluster.start_node(n))?;
    Ok(BrokerStop {
        node: n,
        stop,
        resumed,
    })
}

/// `queue:ready/unacked` of every non-empty queue of `namespace` on the cluster.
fn queue_depths(cluster: &RabbitCluster, namespace: &str) -> String {
    let listed = tokio::task::block_in_place(|| {
        (1..=3).find_map(|n| {
            cluster
                .ctl(
                    n,
                    &[
                        "list_queues",
                        "name",
                        "messages_ready",
                        "messages_unacknowledged",
                        "--no-table-headers",
                    ],
                )
                .ok()
        })
    });
    let Some(listed) = listed else {
        return "no cluster node answers".into();
    };
    crate::broker::nonempty_queues(&listed, namespace)
}
