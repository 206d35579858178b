//! A webhook's own retry policy: a shorter schedule made only of the operator's tiers, so
//! that no queue is ever declared for one webhook, and an age after which its deliveries
//! are dead-lettered as `expired`.

use std::time::Duration;

use crate::retry::tier_name;
use crate::{RetryPlan, RetrySchedule};

/// What a webhook chose; each part absent means the operator's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delays between its attempts, each a tier of `delivery.retry_schedule`, in
    /// non-decreasing order, at most as many as configured; empty: one attempt only.
    pub schedule: Option<Vec<Duration>>,
    /// A delivery older than this (since hookwire first saw its event) is dead-lettered as
    /// `expired` before its next attempt; at most `delivery.max_age`.
    pub max_age: Option<Duration>,
}

impl RetryPolicy {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.schedule.is_none() && self.max_age.is_none()
    }

    /// `Err` with why it cannot be used with the operator's `configured` schedule and
    /// `max_age`.
    pub fn check(&self, configured: &RetrySchedule, max_age: Duration) -> Result<(), String> {
        if let Some(schedule) = &self.schedule {
            let tiers = configured.tiers();
            let names = || {
                tiers
                    .iter()
                    .map(|d| tier_name(*d))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if let Some(bad) = schedule.iter().find(|d| !tiers.contains(d)) {
                return Err(format!(
                    "retry.schedule: {} is not a configured retry tier (delivery.retry_schedule: {})",
                    tier_name(*bad),
                    names()
                ));
            }
            check_order(schedule)?;
            if schedule.len() > configured.delays().len() {
                return Err(format!(
                    "retry.schedule: at most {} delays, as many as delivery.retry_schedule has",
                    configured.delays().len()
                ));
            }
        }
        self.check_max_age(max_age)
    }

    /// `Err` unless its own parts are sound, whatever the operator configured: what a node
    /// checks of a webhook written through the changes stream, whose configuration may
    /// differ from the writer's. [`DeliveryRules`](crate::DeliveryRules) maps a delay that
    /// is not one of this node's tiers to the nearest one.
    pub fn check_shape(&self) -> Result<(), String> {
        if let Some(schedule) = &self.schedule {
            RetrySchedule::try_new(schedule.clone()).map_err(|e| format!("retry.schedule: {e}"))?;
            check_order(schedule)?;
        }
        self.check_max_age(Duration::MAX)
    }

    fn check_max_age(&self, most: Duration) -> Result<(), String> {
        match self.max_age {
            Some(age) if age.is_zero() => Err("retry.max_age must be positive".into()),
            Some(age) if age > most => Err(format!(
                "retry.max_age is at most delivery.max_age ({})",
                tier_name(most)
            )),
            _ => Ok(()),
        }
    }

    /// The tier to wait in after `attempts_made` failed attempts under this policy, or
    /// `None` when its schedule is used up. A receiver's longer `Retry-After` takes the
    /// smallest of the webhook's tiers that covers it; a delay this node does not have as
    /// a tier (the operator's schedule changed) waits in the smallest tier covering it.
    pub fn next_delay(
        &self,
        plan: &RetryPlan,
        attempts_made: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let Some(schedule) = &self.schedule else {
            return plan.schedule().next_delay(attempts_made, retry_after);
        };
        let planned = *schedule.get(usize::try_from(attempts_made).ok()?.checked_sub(1)?)?;
        let wanted = match retry_after {
            Some(wanted) if wanted > planned => schedule
                .iter()
                .copied()
                .find(|d| *d >= wanted)
                .or_else(|| schedule.last().copied())
                .unwrap_or(planned),
            _ => planned,
        };
        Some(if plan.tiers().contains(&wanted) {
            wanted
        } else {
            plan.tier_covering(wanted)
        })
    }

    /// The age limit of its deliveries: its own, if shorter than the operator's.
    pub fn max_age(&self, operator: Duration) -> Duration {
        self.max_age.map_or(operator, |own| own.min(operator))
    }
}

fn check_order(schedule: &[Duration]) -> Result<(), String> {
    if schedule.windows(2).any(|w| w[1] < w[0]) {
        return Err("retry.schedule: delays must not decrease".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn configured() -> RetrySchedule {
        RetrySchedule::try_new(vec![secs(5), secs(30), secs(120)]).expect("valid")
    }

    fn policy(schedule: &[u64], max_age: Option<u64>) -> RetryPolicy {
        RetryPolicy {
            schedule: Some(schedule.iter().copied().map(secs).collect()),
            max_age: max_age.map(secs),
        }
    }

    #[test]
    fn accepts_a_subset_of_the_configured_tiers() {
        let max_age = secs(3600);
        assert_eq!(
            policy(&[5, 120], Some(60)).check(&configured(), max_age),
            Ok(())
        );
        assert_eq!(
            policy(&[5, 5, 5], None).check(&configured(), max_age),
            Ok(())
        );
        assert_eq!(policy(&[], None).check(&configured(), max_age), Ok(()));
        assert_eq!(RetryPolicy::default().check(&configured(), max_age), Ok(()));
    }

    #[test]
    fn refuses_what_the_configured_tiers_do_not_allow() {
        let max_age = secs(3600);
        let err = |p: RetryPolicy| p.check(&configured(), max_age).expect_err("refused");
        assert_eq!(
            err(policy(&[5, 10], None)),
            "retry.schedule: 10s is not a configured retry tier (delivery.retry_schedule: 5s, 30s, 2m)"
        );
        assert_eq!(
            err(policy(&[30, 5], None)),
            "retry.schedule: delays must not decrease"
        );
        assert_eq!(
            err(policy(&[5, 5, 5, 5], None)),
            "retry.schedule: at most 3 delays, as many as delivery.retry_schedule has"
        );
        assert_eq!(err(policy(&[5], Some(0))), "retry.max_age must be positive");
        assert_eq!(
            err(policy(&[5], Some(3601))),
            "retry.max_age is at most delivery.max_age (1h)"
        );
    }

    #[test]
    fn its_shape_is_checked_without_the_configuration() {
        assert_eq!(policy(&[1, 7], Some(1)).check_shape(), Ok(()));
        assert!(policy(&[7, 1], None).check_shape().is_err());
        assert!(policy(&[8 * 24 * 3600], None).check_shape().is_err());
        assert!(policy(&[5], Some(0)).check_shape().is_err());
    }

    #[test]
    fn walks_its_own_schedule_within_the_plans_tiers() {
        let plan = RetryPlan::try_new(configured(), secs(10)).expect("valid");
        let own = policy(&[5, 120], None);
        assert_eq!(own.next_delay(&plan, 0, None), None);
        assert_eq!(own.next_delay(&plan, 1, None), Some(secs(5)));
        assert_eq!(own.next_delay(&plan, 2, None), Some(secs(120)));
        assert_eq!(own.next_delay(&plan, 3, None), None);
        // Retry-After: the webhook's smallest covering tier, else its longest.
        assert_eq!(own.next_delay(&plan, 1, Some(secs(20))), Some(secs(120)));
        assert_eq!(own.next_delay(&plan, 1, Some(secs(999))), Some(secs(120)));
        // No schedule of its own: the operator's.
        let none = RetryPolicy::default();
        assert_eq!(none.next_delay(&plan, 3, None), Some(secs(120)));
        assert_eq!(none.next_delay(&plan, 4, None), None);
        // A delay that is no longer a tier here waits in the smallest tier covering it.
        assert_eq!(
            policy(&[7], None).next_delay(&plan, 1, None),
            Some(secs(10))
        );
        assert_eq!(policy(&[], None).next_delay(&plan, 1, None), None);
    }

    #[test]
    fn its_max_age_only_shortens_the_operators() {
        assert_eq!(policy(&[], Some(60)).max_age(secs(3600)), secs(60));
        assert_eq!(policy(&[], Some(7200)).max_age(secs(3600)), secs(3600));
        assert_eq!(RetryPolicy::default().max_age(secs(3600)), secs(3600));
    }
}
