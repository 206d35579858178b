//! The ending every scenario of several `serve` nodes shares: wait for the publisher and
//! for every delivery to settle after the last fault, then stop the nodes and count.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::task::JoinHandle;

use crate::ledger::{Ledger, Tally};
use crate::scenarios::{finish, wait_settled};
use crate::serve::{Daemon, Settings};
use crate::sink::Sink;

/// How long after the last fault every delivery may take to settle beyond the schedule.
const SETTLE_SLACK: Duration = Duration::from_secs(60);

/// The last fault of a scenario: when, and the publisher still sending meanwhile.
pub struct LastFault {
    pub at: Instant,
    pub publisher: JoinHandle<Result<u32>>,
}

/// What the wait after the last fault found.
pub struct AfterFaults {
    /// Events the publisher sent again (its result).
    pub republished: u32,
    /// From the last fault until settled (or until the wait gave up).
    pub settled_after: Duration,
}

/// Awaits the publisher, then waits (through `nodes[0]`) until every delivery of `ledger`
/// settles, within the schedule plus [`SETTLE_SLACK`] of the last fault; when not, a
/// failure that shows the namespace's queues as `queues` lists them.
pub async fn settle_after_faults(
    nodes: &mut [Daemon],
    last_fault: LastFault,
    settings: &Settings,
    ledger: &Ledger,
    sinks: &[&Sink],
    failures: &mut Vec<String>,
    queues: impl FnOnce() -> String,
) -> Result<AfterFaults> {
    let republished = last_fault.publisher.await??;
    let deadline = last_fault.at + settings.total() + SETTLE_SLACK;
    let t = wait_settled(
        &mut nodes[0],
        ledger,
        sinks,
        deadline,
        |_| false,
        |_, _| true,
    )
    .await?;
    let settled_after = last_fault.at.elapsed();
    if !t.settled() {
        failures.push(format!(
            "not settled within the schedule + {} s of the last fault; queues: {}",
            SETTLE_SLACK.as_secs(),
            queues()
        ));
    }
    Ok(AfterFaults {
        republished,
        settled_after,
    })
}

/// Stops every node but the first gracefully (a failure for each that does not), then
/// finishes through the first ([`finish`], no dead letter allowed): the tally, and the
/// SIGKILLs all nodes took.
pub async fn stop_and_count(
    nodes: &mut [Daemon],
    ledger: &Ledger,
    sinks: &[&Sink],
    failures: &mut Vec<String>,
) -> Result<(Tally, u32)> {
    for node in &mut nodes[1..] {
        if let Err(e) = node.stop().await {
            failures.push(format!("{} graceful stop: {e:#}", node.config.node.id));
        }
    }
    let (tally, _) = finish(&mut nodes[0], ledger, sinks, |_| false, failures).await?;
    let kills = nodes.iter().map(|n| n.kills).sum();
    Ok((tally, kills))
}
