//! What becomes of a task: after an attempt, or instead of one. Pure, so that the whole
//! delivery policy is visible, and tested, in one place; the engine looks things up,
//! makes the attempt, and applies the decision (publishes, commits, emits).

use std::time::Duration;

use crate::catalog::EventType;
use crate::retry::tier_name;
use crate::{DeadReason, Outcome, RetryPlan, Subscription};

/// A healthy webhook's `last_success_ms` is refreshed at most this often, so that a
/// healthy webhook costs no store writes.
pub const HEALTH_WRITE_EVERY_MS: u64 = 60_000;

/// What to do with a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The receiver took it: nothing more to do.
    Delivered,
    /// Its webhook was deleted: drop it.
    Dropped,
    /// Wait in the tier of `delay`, then come back to the work queue.
    Park {
        /// The tier.
        delay: Duration,
        /// Why it waits.
        cause: ParkCause,
    },
    /// Give up on it: to the dead queue.
    DeadLetter {
        /// Why.
        reason: DeadReason,
        /// The reason in words.
        detail: String,
    },
}

/// Why a task waits in a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkCause {
    /// The attempt failed and the schedule has attempts left.
    Retry,
    /// The webhook's caps or circuit held it back: no attempt was used.
    Deferred(Deferral),
    /// The shutdown grace ran out during the attempt: it does not count.
    HandedBack,
}

/// Why a delivery may not be attempted now, and for how long at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// The webhook has as many attempts in flight as it may.
    AtCapacity,
    /// The webhook used up its deliveries for this second.
    RateLimited,
    /// The webhook's circuit is open for this much longer.
    CircuitOpen(Duration),
    /// The receiver asked, with `Retry-After` on a 429 or 503, to be sent nothing for
    /// this much longer.
    RetryAfter(Duration),
}

/// What becomes of a delivery its webhook's caps or circuit hold back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterDeferral {
    /// Wait in a tier, then ask again.
    Park(Disposition),
    /// Deferred past the bound by the webhook's cap or rate limit: wait in process for the
    /// webhook's next free slot, ahead of every delivery deferred less long.
    WaitForSlot,
}

/// Why hookwire disables a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disable {
    /// The receiver answered 410 Gone.
    Gone,
    /// No success for this long, at least `delivery.disable_after`.
    Failing(Duration),
}

impl Disable {
    /// The webhook's `disabled_reason`, also sent in `webhook_disabled`.
    pub fn reason(&self) -> String {
        match self {
            Self::Gone => "the receiver answered 410 Gone".to_owned(),
            Self::Failing(failing_for) => format!(
                "no successful delivery for {}s (delivery.disable_after)",
                failing_for.as_secs()
            ),
        }
    }
}

/// What to write to a webhook's health after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthRecord {
    /// A success: ends a run of failures, refreshes `last_success_ms`.
    Delivered,
    /// A failure: counts it, starts a run of failures if none is going on.
    Failed,
}

/// Everything an attempt leads to, in the order the engine applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// First, record the attempt in the webhook's health, unless `None`.
    pub health: Option<HealthRecord>,
    /// Then disable the webhook, durably, and say so.
    pub disable: Option<Disable>,
    /// Then this becomes of the task.
    pub disposition: Disposition,
}

/// Before an attempt: either attempt it to this webhook, or this instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeforeAttempt<'a> {
    /// Go ahead.
    Attempt(&'a Subscription),
    /// Settle the task without an attempt.
    Instead(Disposition),
}

/// The delivery policy: the retry plan and the limits a task lives by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRules {
    /// The retry schedule and every tier.
    pub plan: RetryPlan,
    /// A task older than this is dead-lettered as `expired`.
    pub max_age: Duration,
    /// A webhook that failed without a success this long is disabled.
    pub disable_after: Duration,
}

impl DeliveryRules {
    /// Before an attempt of a task `age` old to `webhook` (`None`: deleted): a deleted
    /// webhook's task is dropped, a disabled webhook's or an expired one (older than
    /// `max_age`, or the webhook's own shorter `max_age`) dead-lettered.
    pub fn before_attempt<'a>(
        &self,
        webhook: Option<&'a Subscription>,
        age: Duration,
    ) -> BeforeAttempt<'a> {
        let Some(webhook) = webhook else {
            return BeforeAttempt::Instead(Disposition::Dropped);
        };
        if !webhook.enabled {
            return BeforeAttempt::Instead(Disposition::DeadLetter {
                reason: DeadReason::WebhookDisabled,
                detail: format!("webhook {} is disabled", webhook.id),
            });
        }
        let max_age = webhook.retry.max_age(self.max_age);
        if age > max_age {
            return BeforeAttempt::Instead(Disposition::DeadLetter {
                reason: DeadReason::Expired,
                detail: format!(
                    "undelivered after {}s (max_age {})",
                    age.as_secs(),
                    tier_name(max_age)
                ),
            });
        }
        BeforeAttempt::Attempt(webhook)
    }

    /// A task its webhook's caps or circuit hold back waits without using an attempt: an
    /// open circuit or a receiver's pause in the smallest tier that outlasts it, anything
    /// else in the deferral tier.
    pub fn deferred(&self, deferral: Deferral) -> Disposition {
        let delay = match deferral {
            Deferral::CircuitOpen(rest) | Deferral::RetryAfter(rest) => {
                self.plan.tier_covering(rest)
            }
            Deferral::AtCapacity | Deferral::RateLimited => self.plan.deferral(),
        };
        Disposition::Park {
            delay,
            cause: ParkCause::Deferred(deferral),
        }
    }

    /// Like [`Self::deferred`], but the delivery comes back within `left`, what remains
    /// of the deferral bound (`delivery.circuit_max_deferral`): in the tier it would wait
    /// in if that fits, else in the longest tier that fits, or the shortest tier if none does.
    pub fn deferred_within(&self, deferral: Deferral, left: Duration) -> Disposition {
        let wanted = match self.deferred(deferral) {
            Disposition::Park { delay, .. } => delay,
            _ => self.plan.deferral(),
        };
        let tiers = self.plan.tiers();
        let delay = if wanted <= left {
            wanted
        } else {
            tiers
                .range(..=left)
                .next_back()
                .or_else(|| tiers.first())
                .copied()
                .unwrap_or(wanted)
        };
        Disposition::Park {
            delay,
            cause: ParkCause::Deferred(deferral),
        }
    }

    /// What a deferral comes to for a delivery already deferred `deferred_for` without an
    /// attempt, under the bound `bound` (`delivery.circuit_max_deferral`). Below the bound
    /// it is parked so that it comes back within it. Past it, the webhook's own cap or
    /// rate limit no longer parks it: it waits in process for the webhook's next slot,
    /// ahead of every delivery deferred less long. (Past the bound an open circuit admits
    /// it regardless, so a circuit deferral past the bound only happens in a race and is
    /// parked in the shortest tier.)
    pub fn after_deferral(
        &self,
        deferral: Deferral,
        deferred_for: Duration,
        bound: Duration,
    ) -> AfterDeferral {
        let left = bound.saturating_sub(deferred_for);
        match deferral {
            Deferral::AtCapacity | Deferral::RateLimited if left.is_zero() => {
                AfterDeferral::WaitForSlot
            }
            _ => AfterDeferral::Park(self.deferred_within(deferral, left)),
        }
    }

    /// An attempt cut short by the end of the shutdown grace: back to the deferral tier.
    pub fn handed_back(&self) -> Disposition {
        Disposition::Park {
            delay: self.plan.deferral(),
            cause: ParkCause::HandedBack,
        }
    }

    /// After attempt number `attempts` to `webhook` (its health as it was before the
    /// attempt) came to `outcome` at `now_ms`. A retry follows the webhook's own schedule
    /// if it has one, else the operator's. `describe` says what the attempt came to,
    /// for a dead letter's detail; it is called only for one.
    pub fn after_attempt(
        &self,
        outcome: Outcome,
        attempts: u32,
        describe: impl FnOnce() -> String,
        webhook: &Subscription,
        now_ms: u64,
    ) -> Decision {
        let disposition = match outcome {
            Outcome::Delivered => Disposition::Delivered,
            Outcome::Retry { after } => match webhook.retry.next_delay(&self.plan, attempts, after)
            {
                Some(delay) => Disposition::Park {
                    delay,
                    cause: ParkCause::Retry,
                },
                None => Disposition::DeadLetter {
                    reason: DeadReason::Exhausted,
                    detail: format!("{attempts} attempts failed; last: {}", describe()),
                },
            },
            Outcome::Permanent => Disposition::DeadLetter {
                reason: DeadReason::PermanentStatus,
                detail: describe(),
            },
            Outcome::Gone => Disposition::DeadLetter {
                reason: DeadReason::Gone,
                detail: "receiver answered 410".to_owned(),
            },
        };
        Decision {
            health: health_record(outcome, webhook, now_ms),
            disable: self.disable(outcome, webhook, now_ms),
            disposition,
        }
    }

    /// 410 disables by itself; other failures once the run of failures the webhook was
    /// in before this attempt has lasted `disable_after`.
    fn disable(&self, outcome: Outcome, webhook: &Subscription, now_ms: u64) -> Option<Disable> {
        match outcome {
            Outcome::Delivered => None,
            Outcome::Gone => Some(Disable::Gone),
            Outcome::Retry { .. } | Outcome::Permanent => {
                let since = webhook.failing_since_ms?;
                let failing_for = Duration::from_millis(now_ms.saturating_sub(since));
                (failing_for >= self.disable_after).then_some(Disable::Failing(failing_for))
            }
        }
    }
}

/// Every failure is written; a success only when it ends a run of failures or
/// `last_success_ms` is older than [`HEALTH_WRITE_EVERY_MS`]; a 410 not at all, since
/// it disables the webhook by itself.
fn health_record(outcome: Outcome, webhook: &Subscription, now_ms: u64) -> Option<HealthRecord> {
    match outcome {
        Outcome::Gone => None,
        Outcome::Retry { .. } | Outcome::Permanent => Some(HealthRecord::Failed),
        Outcome::Delivered => {
            let stale = webhook
                .last_success_ms
                .is_none_or(|t| now_ms.saturating_sub(t) > HEALTH_WRITE_EVERY_MS);
            let healthy = webhook.consecutive_failures == 0 && webhook.failing_since_ms.is_none();
            (!healthy || stale).then_some(HealthRecord::Delivered)
        }
    }
}

/// Whether what happens to a delivery of `cause` (its event type in the catalog) may be
/// announced with operational events: not when it is one itself, so failures never cascade.
pub fn emits_operational_events(cause: Option<&EventType>) -> bool {
    !cause.is_some_and(|t| t.operational)
}

#[cfg(test)]
mod tests;
