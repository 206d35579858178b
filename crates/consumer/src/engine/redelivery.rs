//! What a redelivered message asks before it makes a delivery again.

use hookwire_amqp::wire::Task;
use tracing::{debug, warn};

use super::Engine;
use crate::telemetry;

impl Engine {
    /// Whether the delivery `task` of a redelivered event was settled already: a node
    /// stopped (or lost its channel) before the event's ack. The journal knows the
    /// deliveries this node settled (delivered, scheduled for a retry, dead-lettered)
    /// while the event waited for its others; the attempt log knows those made.
    pub(super) fn settled_before(&self, task: &Task) -> bool {
        let webhook_id = task.webhook_id();
        if self.journal.contains(&webhook_id) {
            telemetry::delivery("already_settled");
            debug!(%webhook_id, "Redelivered event's delivery was settled already; not made again.");
            return true;
        }
        self.delivered_before(task, &webhook_id)
    }

    /// Whether this node's attempt log holds a delivered attempt of `task`, whose message
    /// was redelivered. Only redelivered messages ask, so the normal path pays nothing.
    /// A task's own message never asks the journal: a retry is the very message its
    /// event's journaled delivery scheduled. A record not here yet (the last moments
    /// before a crash, or another node's attempt still on its way through the attempts
    /// stream), or a log that cannot be read, means the delivery is made again, as
    /// at-least-once allows.
    pub(super) fn delivered_before(&self, task: &Task, webhook_id: &str) -> bool {
        // Attempts are timed by the node that made them: allow for its clock.
        const CLOCK_ALLOWANCE_MS: u64 = 60_000;
        let since = task.first_seen_ms.saturating_sub(CLOCK_ALLOWANCE_MS);
        match self
            .store
            .delivered_since(&task.subscription_id, webhook_id, since)
        {
            Ok(true) => {
                telemetry::delivery("already_settled");
                debug!(%webhook_id, "Redelivered, but the attempt log records it delivered; not made again.");
                true
            }
            Ok(false) => false,
            Err(error) => {
                warn!(%webhook_id, %error, "Attempt log unreadable; the redelivered delivery is made again.");
                false
            }
        }
    }
}
