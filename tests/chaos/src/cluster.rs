//! The `cluster` scenario: three replicated `serve` nodes on one namespace
//! (docs/operations.md, "Several nodes"), their webhooks moved into the changes stream the
//! way a single node's store is, then each node disturbed in turn while events flow: one
//! SIGKILLed, one SIGKILLed with its data directory wiped (a lost disk: it rebuilds from
//! the stream), one SIGKILLed last.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use uuid::Uuid;

use crate::Ctx;
use crate::ledger::{Ledger, Outcome};
use crate::publish::{EVENT, ORG, publish_paced};
use crate::scenarios::{list_all_webhooks, metric_sum, note};
use crate::serve::{Daemon, Settings};
use crate::settle::{LastFault, settle_after_faults, stop_and_count};
use crate::sink::{Behavior, Disturbing, Sink};

/// What is done to a node, in this order: node 2 killed, node 3 killed and wiped, node 1
/// killed; each is restarted at once.
const FAULTS: [(usize, bool); 3] = [(1, false), (2, true), (0, false)];

/// Three nodes, `events` events to two webhooks (one healthy, one flaky), the faults
/// above spread over the publishing window. Nothing may be lost, every delivery must settle
/// within the schedule plus 60 s of the last fault, every node must answer alike
/// afterwards, and more than one node must have delivered.
pub async fn cluster(ctx: &Ctx, events: usize) -> Result<Outcome> {
    let t0 = Instant::now();
    let flaky = Sink::start("flaky", ORG, &[EVENT], Behavior::Flaky).await?;
    let healthy = Sink::start("healthy", ORG, &[EVENT], Behavior::Healthy).await?;
    let sinks = [&flaky, &healthy];
    let settings = Settings {
        attempts_per_webhook: Some(keep_attempts(events)),
        ..Settings::default()
    };
    let subs: Vec<_> = sinks.iter().map(|s| s.sub.clone()).collect();
    let mut nodes = Daemon::cluster(ctx, &settings, &subs, 3).await?;
    for node in &mut nodes {
        node.start().await?;
    }
    let mut failures = Vec::new();
    let imported: BTreeSet<Uuid> = subs.iter().map(|s| s.id).collect();
    for node in &nodes {
        let listed: BTreeSet<Uuid> = list_all_webhooks(node, ORG).await?.into_iter().collect();
        if listed != imported {
            failures.push(format!(
                "{} lists {listed:?} after the import, not {imported:?}",
                node.config.node.id
            ));
        }
    }

    let mut ledger = Ledger::default();
    let ids = ledger.expect_events("cluster", events, &sinks);
    let window = Duration::from_secs_f64((events as f64 / 100.0).max(12.0));
    let publisher = tokio::spawn(publish_paced(
        ctx.amqp_url.clone(),
        nodes[0].config.amqp.namespace.clone(),
        ids,
        window,
    ));
    // Each node's `/metrics` starts again at each start: add up what it said before
    // each kill.
    let mut delivered = [0.0; 3];
    let mut rebuilt_s = 0.0;
    for (n, wipe) in FAULTS {
        tokio::time::sleep(window / 4).await;
        let node = &mut nodes[n];
        node.check_alive()?;
        delivered[n] += delivered_by(node).await;
        node.kill()?;
        let disturbing = Disturbing::begin(&sinks);
        if wipe {
            node.wipe_store()?;
        }
        let restart = Instant::now();
        node.start().await?;
        disturbing.end();
        if wipe {
            rebuilt_s = restart.elapsed().as_secs_f64();
        }
    }
    let last_fault = Instant::now();
    let namespace = nodes[0].config.amqp.namespace.clone();
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
        || crate::broker::queue_depths(&namespace),
    )
    .await?;
    // Once settled, every node has applied every dead letter and answers alike, the
    // wiped one included.
    let answers = answers_of(&nodes[0]).await?;
    for node in &mut nodes[1..] {
        node.check_alive()?;
        if answers_of(node).await? != answers {
            failures.push(format!(
                "{} answers otherwise than node-1 (webhooks, dead letters)",
                node.config.node.id
            ));
        }
    }
    let hooks: Vec<Uuid> = subs.iter().map(|s| s.id).collect();
    let attempts_listed = match same_attempts(&nodes, &hooks).await {
        Ok(n) => n,
        Err(e) => {
            failures.push(format!("{e:#}"));
            0
        }
    };
    for (n, node) in nodes.iter().enumerate() {
        delivered[n] += delivered_by(node).await;
    }
    if delivered.iter().filter(|d| **d > 0.0).count() < 2 {
        failures.push(format!("fewer than two nodes delivered: {delivered:?}"));
    }
    let (tally, kills) = stop_and_count(&mut nodes, &ledger, &sinks, &mut failures).await?;
    Ok(Outcome {
        name: "cluster".into(),
        tally,
        notes: vec![
            note("events", events),
            note("nodes", nodes.len()),
            note("kills", kills),
            note("wiped_and_rebuilt", 1),
            note("rebuild_start_s", format!("{rebuilt_s:.1}")),
            note(
                "delivered_by_node",
                delivered.map(|d| format!("{d:.0}")).join("/"),
            ),
            note(
                "settled_s_after_last_fault",
                format!("{:.0}", after.settled_after.as_secs_f64()),
            ),
            note("republished", after.republished),
            note("attempts_listed_alike", attempts_listed),
        ],
        failures,
        wall: t0.elapsed(),
        must_lose: None,
    })
}

/// Deliveries this node made since it started, from its `/metrics` (0 if it cannot say).
async fn delivered_by(node: &Daemon) -> f64 {
    match async { node.client()?.metrics().await }.await {
        Ok(text) => metric_sum(&text, "hookwire_deliveries_total{outcome=\"delivered\"}"),
        Err(_) => 0.0,
    }
}

/// What must read the same on every node: the webhooks and the dead letters, sorted.
async fn answers_of(node: &Daemon) -> Result<(BTreeSet<Uuid>, Vec<String>)> {
    let webhooks = list_all_webhooks(node, ORG).await?.into_iter().collect();
    let mut dead: Vec<String> = node
        .dead_letters(ORG)
        .await?
        .into_iter()
        .map(|d| format!("{d:?}"))
        .collect();
    dead.sort();
    Ok((webhooks, dead))
}

/// More attempts per webhook than `events` events can make: each delivery makes at most
/// three (the flaky receiver fails a webhook-id twice at most), and a kill redelivers at
/// most what was in flight.
pub fn keep_attempts(events: usize) -> usize {
    events * 4 + 1000
}

/// `None` when every node's list (`lists`, one per node) is the same and not empty; else
/// how they differ: their lengths, and where node-1's and another's first differ.
fn differ(lists: &[Vec<serde_json::Value>]) -> Option<String> {
    let lengths: Vec<usize> = lists.iter().map(Vec::len).collect();
    if lists.first().is_none_or(Vec::is_empty) {
        return Some(format!("{lengths:?} attempts listed"));
    }
    let shown = |v: Option<&serde_json::Value>| v.map_or("nothing".into(), ToString::to_string);
    lists.iter().enumerate().skip(1).find_map(|(n, list)| {
        let i = (0..lists[0].len().max(list.len())).find(|i| lists[0].get(*i) != list.get(*i))?;
        Some(format!(
            "{lengths:?} attempts listed; node-1 and node-{} differ first at #{i}: {} vs {}",
            n + 1,
            shown(lists[0].get(i)),
            shown(list.get(i))
        ))
    })
}

/// Every attempt of webhook `id` that `node` lists, oldest first.
async fn attempts_of(node: &Daemon, id: &Uuid) -> Result<Vec<serde_json::Value>> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/orgs/{ORG}/webhooks/{id}/attempts?limit=500{cursor}");
        let (status, body) = node.api(reqwest::Method::GET, &path, None).await?;
        anyhow::ensure!(status == 200, "GET {path} answered {status}: {body}");
        all.extend(body["attempts"].as_array().into_iter().flatten().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return Ok(all),
        }
    }
}

/// Waits (30 s at most) until every node lists the same attempts for each of `hooks`, the
/// wiped node included, through the attempts stream; returns how many are compared. The
/// whole lists are compared: the scenario keeps more attempts per webhook than it can
/// make ([`keep_attempts`]), so no node prunes any.
async fn same_attempts(nodes: &[Daemon], hooks: &[Uuid]) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut differing = Vec::new();
        let mut compared = 0;
        for id in hooks {
            let mut lists = Vec::new();
            for node in nodes {
                lists.push(attempts_of(node, id).await?);
            }
            if let Some(how) = differ(&lists) {
                differing.push(format!("{id}: {how}"));
            }
            compared += lists[0].len();
        }
        if differing.is_empty() {
            return Ok(compared);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the nodes list different attempts: {}",
            differing.join("; ")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attempt(n: u64) -> serde_json::Value {
        json!({"message_id": format!("m{n}"), "attempt": 1})
    }

    #[test]
    fn the_whole_attempt_lists_are_compared() {
        let all: Vec<_> = (0..5).map(attempt).collect();
        assert_eq!(differ(&[all.clone(), all.clone(), all.clone()]), None);
        // A node missing the oldest attempt: the newest every node lists agree, but the
        // lists do not.
        let without_oldest = all[1..].to_vec();
        let how = differ(&[all.clone(), without_oldest, all.clone()]).expect("differs");
        assert!(
            how.starts_with("[5, 4, 5] attempts listed; node-1 and node-2 differ first at #0"),
            "{how}"
        );
        // One attempt the others lack, at the end.
        let mut more = all.clone();
        more.push(attempt(9));
        let how = differ(&[all.clone(), all.clone(), more]).expect("differs");
        assert!(how.contains("node-3 differ first at #5"), "{how}");
        assert!(
            how.ends_with("vs {\"attempt\":1,\"message_id\":\"m9\"}"),
            "{how}"
        );
        // Nothing listed is no agreement.
        assert!(differ(&[vec![], vec![], vec![]]).is_some());
    }
}
