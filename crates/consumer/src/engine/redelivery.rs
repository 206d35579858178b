//! What a redelivered message asks before it makes a delivery again.

use std::time::Duration;

use hookwire_amqp::headers;
use hookwire_amqp::topology::DELIVERY_LIMIT;
use hookwire_amqp::wire::Task;
use lapin::message::Delivery;
use tracing::{debug, warn};

use super::Engine;
use crate::settled::{Handled, TaskCopy};
use crate::telemetry;

/// The longest a redelivered message waits for the attempts stream to bring what other
/// nodes recorded before it was redelivered. Attempts reach the stream in batches
/// gathered for 25 ms, and are applied here soon after; a busy cluster ends the wait
/// within a few hundred ms, a quiet one at this bound.
const REPLICATION_WAIT: Duration = Duration::from_secs(2);

impl Engine {
    /// Keeps the deliveries of a redelivered event that were not settled before: a node
    /// stopped (or lost its channel) before the event's ack. This node's journal knows
    /// the deliveries it settled (delivered, scheduled for a retry, dead-lettered) while
    /// the event waited for its others; the attempt log knows those attempted, by any
    /// node once the attempts stream has brought them.
    pub(super) async fn retain_unsettled<S>(&self, tasks: &mut Vec<(Task, S)>) {
        tasks.retain(|(task, _)| !self.journaled(task) && !self.recorded_settled(task));
        if !tasks.is_empty() && self.await_replicated_attempts().await {
            tasks.retain(|(task, _)| !self.recorded_settled(task));
        }
    }

    /// Makes this handling of `message` the lineage of what `task`'s delivery publishes
    /// (its retry, its deferral) and, when a redelivery makes the delivery again, leaves
    /// behind what the earlier handlings published for it.
    pub(super) fn adopt(&self, task: &mut Task, handled: Handled<'_>, message: &Delivery) {
        let incarnation = incarnation(message);
        if incarnation > 0 {
            self.journal.supersede_earlier(handled, incarnation);
        }
        task.lineage = handled.lineage(incarnation);
    }

    /// Whether `task`'s message was published by a handling a redelivery has made again
    /// since: that redelivery's own outcome goes on instead.
    pub(super) fn left_behind(&self, task: &Task) -> bool {
        let left = task.lineage.is_some_and(|l| self.journal.superseded(l));
        if left {
            telemetry::delivery("superseded");
            debug!(webhook_id = %task.webhook_id(), attempt = task.attempts.saturating_add(1), "Task was published by a handling its redelivery made again; dropped.");
        }
        left
    }

    /// Whether the attempt log shows `task`, whose message was redelivered, settled: its
    /// delivery delivered, or the attempt this message was to make made. A task's own
    /// message never asks the journal: a retry is the very message its event's
    /// journaled delivery scheduled. Only redelivered messages ask, so the normal path
    /// pays nothing.
    pub(super) async fn settled_before(&self, task: &Task) -> bool {
        self.journaled_task(task)
            || self.recorded_settled(task)
            || (self.await_replicated_attempts().await && self.recorded_settled(task))
    }

    /// Whether this node settled the very message: answered, then stopped before its ack
    /// (the attempt log's batch may not have been written yet).
    fn journaled_task(&self, task: &Task) -> bool {
        let webhook_id = task.webhook_id();
        let known = self.journal.contains_task(task_copy(task, &webhook_id));
        if known {
            telemetry::delivery("already_settled");
            debug!(%webhook_id, attempt = task.attempts.saturating_add(1), "Redelivered task was settled already; not made again.");
        }
        known
    }

    fn journaled(&self, task: &Task) -> bool {
        let webhook_id = task.webhook_id();
        let known = self.journal.contains(&webhook_id);
        if known {
            telemetry::delivery("already_settled");
            debug!(%webhook_id, "Redelivered event's delivery was settled already; not made again.");
        }
        known
    }

    /// A record not here (the last moments before a crash, or another node's attempt
    /// not yet brought by the attempts stream), or a log that cannot be read, means the
    /// delivery is made again, as at-least-once allows.
    fn recorded_settled(&self, task: &Task) -> bool {
        // A delivered attempt counts from a minute before the message was first seen
        // (attempts are timed by the node that made them: allow for its clock, and for
        // an event whose first sight the payload archive had not kept yet). Any other
        // attempt counts only from then: a resend or a replay is a new task of the same
        // `webhook-id`, first seen when it is made, and the delivery's earlier failed
        // attempts are not its own.
        const CLOCK_ALLOWANCE_MS: u64 = 60_000;
        let webhook_id = task.webhook_id();
        let attempt = task.attempts.saturating_add(1);
        let delivered_since = task.first_seen_ms.saturating_sub(CLOCK_ALLOWANCE_MS);
        match self.store.settled_since(
            &task.subscription_id,
            &webhook_id,
            delivered_since,
            task.first_seen_ms,
            attempt,
        ) {
            Ok(true) => {
                telemetry::delivery("already_settled");
                debug!(%webhook_id, attempt, "Redelivered, but the attempt log records it settled; not made again.");
                true
            }
            Ok(false) => false,
            Err(error) => {
                warn!(%webhook_id, %error, "Attempt log unreadable; the redelivered delivery is made again.");
                false
            }
        }
    }

    /// With several nodes, waits (at most [`REPLICATION_WAIT`]) until the attempts
    /// stream has brought every attempt recorded before now: the message may have been
    /// delivered by a node that stopped before its ack. `false` on a node that does not
    /// read the stream, where there is nothing to wait for.
    async fn await_replicated_attempts(&self) -> bool {
        if !self.settings.attempts_replicated {
            return false;
        }
        let now = hookwire_core::now_ms();
        let mut through = self.store.attempts_replicated_through();
        if tokio::time::timeout(REPLICATION_WAIT, through.wait_for(|t| *t >= now))
            .await
            .is_err()
        {
            debug!(
                "The attempts stream brought nothing newer within the wait; the redelivered delivery is decided on what it has."
            );
        }
        true
    }
}

/// How many times `message` was delivered before: 0 on its first delivery, else the
/// quorum queue's `x-delivery-count`, which the broker sets on every redelivery (a
/// producer's own on a first delivery is ignored), at most the queues' delivery limit.
fn incarnation(message: &Delivery) -> u32 {
    if !message.redelivered {
        return 0;
    }
    let count = headers::unsigned(message.properties.headers().as_ref(), "x-delivery-count");
    let limit = DELIVERY_LIMIT.unsigned_abs();
    u32::try_from(count.unwrap_or(1).clamp(1, limit)).unwrap_or(1)
}

/// How the settled journal tells `task`'s message from the other copies of its delivery.
pub(super) fn task_copy<'a>(task: &Task, webhook_id: &'a str) -> TaskCopy<'a> {
    TaskCopy {
        webhook_id,
        attempt: task.attempts.saturating_add(1),
        first_seen_ms: task.first_seen_ms,
        due_ms: task.due_ms,
    }
}
