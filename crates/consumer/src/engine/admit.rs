//! Admission of an attempt, or its deferral: held in process for the webhook's next
//! slot when that comes soon (or once deferred past the deferral bound), parked in a
//! tier otherwise.

use std::time::{Duration, Instant};

use hookwire_amqp::Publisher;
use hookwire_amqp::wire::Task;
use hookwire_core::Subscription;
use hookwire_core::disposition::AfterDeferral;
use tracing::debug;

use super::Engine;
use crate::endpoints::{Admission, Candidate};
use crate::{Result, telemetry};

impl Engine {
    /// Admits an attempt of `task` to `sub` at `now_ms`, or defers it. `None`: the task
    /// is settled without an attempt (parked, or handed back at the end of the grace).
    pub(super) async fn admit(
        &self,
        publisher: &Publisher,
        task: &Task,
        sub: &Subscription,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Option<Admission>> {
        let deferred_for = task
            .deferred_since_ms
            .map(|since| Duration::from_millis(now_ms.saturating_sub(since)));
        let candidate = Candidate {
            attempted: task.attempts > 0,
            deferred_for,
        };
        let mut deferral = match self.endpoints.admit(sub, candidate, Instant::now()) {
            Ok(admission) => return Ok(Some(admission)),
            Err(deferral) => deferral,
        };
        let since_ms = task.deferred_since_ms.unwrap_or(now_ms);
        let max_wait = self.settings.limits.max_slot_wait;
        // `max_slot_wait` 0: always park, even before any answer has told a wait.
        let soon = !max_wait.is_zero()
            && self
                .endpoints
                .expected_wait(sub, deferral, Instant::now())
                .is_some_and(|wait| wait <= max_wait);
        if soon {
            // A short wait in line beats a round trip through a tier, whose delay is
            // longer than the wait and leaves the receiver idle meanwhile.
            let waited = self
                .endpoints
                .wait_for_slot(sub, candidate, since_ms, false);
            let waited = tokio::select! {
                waited = waited => waited,
                () = self.grace_over.cancelled() => {
                    let deferred = Task { deferred_since_ms: Some(since_ms), ..task.clone() };
                    self.settle(publisher, &deferred, body, self.rules.handed_back()).await?;
                    return Ok(None);
                }
            };
            match waited {
                Ok(admission) => {
                    telemetry::waited_for_slot();
                    return Ok(Some(admission));
                }
                // Slots freed slower than expected, or the circuit opened: the tier.
                Err(refused) => deferral = refused,
            }
        }
        let deferred = Task {
            deferred_since_ms: Some(since_ms),
            ..task.clone()
        };
        let bound = self.settings.limits.circuit.max_deferral;
        let disposition = match self.rules.after_deferral(
            deferral,
            deferred_for.unwrap_or_default(),
            bound,
        ) {
            AfterDeferral::Park(disposition) => {
                telemetry::deferral(deferral);
                disposition
            }
            AfterDeferral::WaitForSlot => {
                let held = tokio::select! {
                    held = self.endpoints.wait_for_slot(sub, candidate, since_ms, true) => held,
                    () = self.grace_over.cancelled() => {
                        let disposition = self.rules.handed_back();
                        self.settle(publisher, &deferred, body, disposition).await?;
                        return Ok(None);
                    }
                };
                match held {
                    Ok(admission) => {
                        let waited =
                            Duration::from_millis(hookwire_core::now_ms().saturating_sub(since_ms));
                        telemetry::held_for_slot(waited);
                        debug!(webhook_id = %task.webhook_id(), deferred_ms = waited.as_millis() as u64, "Delivery held past the deferral bound got its webhook's slot.");
                        return Ok(Some(admission));
                    }
                    // As many held as may be, or the circuit opened meanwhile: back
                    // soon, in the shortest tier, still ahead of fresh deliveries.
                    Err(deferral) => {
                        telemetry::deferral(deferral);
                        self.rules.deferred_within(deferral, Duration::ZERO)
                    }
                }
            }
        };
        self.settle(publisher, &deferred, body, disposition).await?;
        Ok(None)
    }
}
