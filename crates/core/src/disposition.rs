//! What becomes of a task: after an attempt, or instead of one. Pure, so that the whole
//! delivery policy is visible, and tested, in one place; the engine looks things up,
//! makes the attempt, and applies the decision (publishes, commits, emits).

use std::time::Duration;

use crate::catalog::EventType;
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
}

/// Why hookwire disables a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disable {
    /// The receiver answered 410 Gone.
    Gone,
    /// No success for this long, at least `delivery.disable_after_secs`.
    Failing(Duration),
}

impl Disable {
    /// The webhook's `disabled_reason`, also sent in `webhook_disabled`.
    pub fn reason(&self) -> String {
        match self {
            Self::Gone => "the receiver answered 410 Gone".to_owned(),
            Self::Failing(failing_for) => format!(
                "no successful delivery for {}s (delivery.disable_after_secs)",
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
    /// webhook's task is dropped, a disabled webhook's or an expired one dead-lettered.
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
        if age > self.max_age {
            return BeforeAttempt::Instead(Disposition::DeadLetter {
                reason: DeadReason::Expired,
                detail: format!("undelivered after {}s", age.as_secs()),
            });
        }
        BeforeAttempt::Attempt(webhook)
    }

    /// A task its webhook's caps or circuit hold back waits without using an attempt: an
    /// open circuit in the smallest tier that outlasts it, anything else in the deferral tier.
    pub fn deferred(&self, deferral: Deferral) -> Disposition {
        let delay = match deferral {
            Deferral::CircuitOpen(rest) => self.plan.tier_covering(rest),
            Deferral::AtCapacity | Deferral::RateLimited => self.plan.deferral(),
        };
        Disposition::Park {
            delay,
            cause: ParkCause::Deferred(deferral),
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
    /// attempt) came to `outcome` at `now_ms`. `describe` says what the attempt came to,
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
            Outcome::Retry { after } => match self.plan.schedule().next_delay(attempts, after) {
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
mod tests {
    use super::*;
    use crate::{Catalog, RetrySchedule, Secret};

    const NOW: u64 = 1_000_000_000;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn rules() -> DeliveryRules {
        let schedule = RetrySchedule::try_new(vec![secs(5), secs(30), secs(120)]).expect("valid");
        DeliveryRules {
            plan: RetryPlan::try_new(schedule, secs(10)).expect("valid"),
            max_age: secs(3600),
            disable_after: secs(600),
        }
    }

    fn webhook() -> Subscription {
        let secret = Secret::from_bytes(vec![7; 32]).expect("secret");
        Subscription::new("acme", "https://a.test/", "", vec![], secret, NOW - 1)
    }

    /// Healthy, last success 10 s ago: a success writes nothing.
    fn healthy() -> Subscription {
        Subscription {
            last_success_ms: Some(NOW - 10_000),
            ..webhook()
        }
    }

    /// Failing since `for_secs` ago.
    fn failing(for_secs: u64) -> Subscription {
        Subscription {
            consecutive_failures: 3,
            failing_since_ms: Some(NOW - for_secs * 1000),
            last_success_ms: Some(NOW - for_secs * 1000 - 1),
            ..webhook()
        }
    }

    fn retry(after: Option<u64>) -> Outcome {
        Outcome::Retry {
            after: after.map(secs),
        }
    }

    fn park(delay: u64) -> Disposition {
        Disposition::Park {
            delay: secs(delay),
            cause: ParkCause::Retry,
        }
    }

    fn dead(reason: DeadReason, detail: &str) -> Disposition {
        Disposition::DeadLetter {
            reason,
            detail: detail.to_owned(),
        }
    }

    /// What, outcome, attempts made, webhook, health write, disable, disposition.
    type Row = (
        &'static str,
        Outcome,
        u32,
        Subscription,
        Option<HealthRecord>,
        Option<Disable>,
        Disposition,
    );

    #[test]
    fn after_an_attempt() {
        use HealthRecord::{Delivered as Success, Failed};
        let described = || "receiver answered 503".to_owned();
        let rows: Vec<Row> = vec![
            (
                "delivered, healthy: no write",
                Outcome::Delivered,
                1,
                healthy(),
                None,
                None,
                Disposition::Delivered,
            ),
            (
                "delivered, never succeeded before: written",
                Outcome::Delivered,
                1,
                webhook(),
                Some(Success),
                None,
                Disposition::Delivered,
            ),
            (
                "delivered, last success over a minute ago: written",
                Outcome::Delivered,
                2,
                Subscription {
                    last_success_ms: Some(NOW - HEALTH_WRITE_EVERY_MS - 1),
                    ..webhook()
                },
                Some(Success),
                None,
                Disposition::Delivered,
            ),
            (
                "delivered, last success a minute ago: no write",
                Outcome::Delivered,
                2,
                Subscription {
                    last_success_ms: Some(NOW - HEALTH_WRITE_EVERY_MS),
                    ..webhook()
                },
                None,
                None,
                Disposition::Delivered,
            ),
            (
                "delivered after failures: ends the run",
                Outcome::Delivered,
                3,
                Subscription {
                    consecutive_failures: 2,
                    ..healthy()
                },
                Some(Success),
                None,
                Disposition::Delivered,
            ),
            (
                "delivered while failing for long: never disables",
                Outcome::Delivered,
                4,
                failing(100_000),
                Some(Success),
                None,
                Disposition::Delivered,
            ),
            (
                "retryable, attempts left: the schedule's delay",
                retry(None),
                1,
                healthy(),
                Some(Failed),
                None,
                park(5),
            ),
            (
                "retryable, second attempt",
                retry(None),
                2,
                healthy(),
                Some(Failed),
                None,
                park(30),
            ),
            (
                "Retry-After within the tier",
                retry(Some(3)),
                1,
                healthy(),
                Some(Failed),
                None,
                park(5),
            ),
            (
                "Retry-After picks the covering tier",
                retry(Some(20)),
                1,
                healthy(),
                Some(Failed),
                None,
                park(30),
            ),
            (
                "Retry-After beyond every tier: the longest",
                retry(Some(86_400)),
                1,
                healthy(),
                Some(Failed),
                None,
                park(120),
            ),
            (
                "exhausted",
                retry(None),
                4,
                healthy(),
                Some(Failed),
                None,
                dead(
                    DeadReason::Exhausted,
                    "4 attempts failed; last: receiver answered 503",
                ),
            ),
            (
                "exhausted despite Retry-After",
                retry(Some(1)),
                4,
                healthy(),
                Some(Failed),
                None,
                dead(
                    DeadReason::Exhausted,
                    "4 attempts failed; last: receiver answered 503",
                ),
            ),
            (
                "permanent",
                Outcome::Permanent,
                1,
                healthy(),
                Some(Failed),
                None,
                dead(DeadReason::PermanentStatus, "receiver answered 503"),
            ),
            (
                "410: disables and dead-letters, no health write",
                Outcome::Gone,
                1,
                healthy(),
                None,
                Some(Disable::Gone),
                dead(DeadReason::Gone, "receiver answered 410"),
            ),
            (
                "410 while failing for long: disabled as gone",
                Outcome::Gone,
                2,
                failing(100_000),
                None,
                Some(Disable::Gone),
                dead(DeadReason::Gone, "receiver answered 410"),
            ),
            (
                "failing, not yet disable_after",
                retry(None),
                2,
                failing(599),
                Some(Failed),
                None,
                park(30),
            ),
            (
                "failing for disable_after: disables, then retries",
                retry(None),
                2,
                failing(600),
                Some(Failed),
                Some(Disable::Failing(secs(600))),
                park(30),
            ),
            (
                "failing longer, exhausted: disables, then dead-letters",
                retry(None),
                4,
                failing(700),
                Some(Failed),
                Some(Disable::Failing(secs(700))),
                dead(
                    DeadReason::Exhausted,
                    "4 attempts failed; last: receiver answered 503",
                ),
            ),
            (
                "failing longer, permanent: disables, then dead-letters",
                Outcome::Permanent,
                1,
                failing(700),
                Some(Failed),
                Some(Disable::Failing(secs(700))),
                dead(DeadReason::PermanentStatus, "receiver answered 503"),
            ),
            (
                "first failure of a run never disables",
                retry(None),
                1,
                Subscription {
                    failing_since_ms: None,
                    ..failing(0)
                },
                Some(Failed),
                None,
                park(5),
            ),
        ];
        for (what, outcome, attempts, webhook, health, disable, disposition) in rows {
            let decision = rules().after_attempt(outcome, attempts, described, &webhook, NOW);
            assert_eq!(
                decision,
                Decision {
                    health,
                    disable,
                    disposition
                },
                "{what}"
            );
        }
    }

    #[test]
    fn a_delivered_attempt_is_never_described() {
        let decision = rules().after_attempt(
            Outcome::Delivered,
            1,
            || panic!("described"),
            &healthy(),
            NOW,
        );
        assert_eq!(decision.disposition, Disposition::Delivered);
    }

    #[test]
    fn before_an_attempt() {
        let enabled = healthy();
        let disabled = Subscription {
            enabled: false,
            ..healthy()
        };
        let rules = rules();
        assert_eq!(
            rules.before_attempt(Some(&enabled), secs(3600)),
            BeforeAttempt::Attempt(&enabled),
            "exactly max_age old is not expired"
        );
        assert_eq!(
            rules.before_attempt(None, secs(0)),
            BeforeAttempt::Instead(Disposition::Dropped),
            "deleted webhook"
        );
        assert_eq!(
            rules.before_attempt(Some(&disabled), secs(0)),
            BeforeAttempt::Instead(dead(
                DeadReason::WebhookDisabled,
                &format!("webhook {} is disabled", disabled.id)
            )),
        );
        assert_eq!(
            rules.before_attempt(Some(&disabled), secs(7200)),
            BeforeAttempt::Instead(dead(
                DeadReason::WebhookDisabled,
                &format!("webhook {} is disabled", disabled.id)
            )),
            "disabled before expired"
        );
        assert_eq!(
            rules.before_attempt(Some(&enabled), Duration::from_millis(3_601_500)),
            BeforeAttempt::Instead(dead(DeadReason::Expired, "undelivered after 3601s")),
        );
    }

    #[test]
    fn deferrals_use_no_attempt() {
        let rules = rules();
        let deferred = |deferral, delay| Disposition::Park {
            delay: secs(delay),
            cause: ParkCause::Deferred(deferral),
        };
        for (deferral, delay) in [
            (Deferral::AtCapacity, 10),
            (Deferral::RateLimited, 10),
            // Every tier covers a circuit, the deferral tier included.
            (Deferral::CircuitOpen(secs(7)), 10),
            (Deferral::CircuitOpen(secs(3)), 5),
            (Deferral::CircuitOpen(secs(31)), 120),
            (Deferral::CircuitOpen(secs(9999)), 120),
        ] {
            assert_eq!(
                rules.deferred(deferral),
                deferred(deferral, delay),
                "{deferral:?}"
            );
        }
        assert_eq!(
            rules.handed_back(),
            Disposition::Park {
                delay: secs(10),
                cause: ParkCause::HandedBack
            }
        );
    }

    #[test]
    fn disable_reasons() {
        assert_eq!(Disable::Gone.reason(), "the receiver answered 410 Gone");
        assert_eq!(
            Disable::Failing(Duration::from_millis(600_900)).reason(),
            "no successful delivery for 600s (delivery.disable_after_secs)"
        );
    }

    #[test]
    fn operational_events_never_announce_operational_events() {
        let catalog = Catalog::builtin();
        assert!(emits_operational_events(catalog.get("report_created")));
        assert!(emits_operational_events(None), "unknown types announce");
        for t in ["webhook_disabled", "delivery_dead_lettered"] {
            assert!(!emits_operational_events(catalog.get(t)), "{t}");
        }
    }
}
