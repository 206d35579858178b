//! The retry schedule: how long to wait after each failed attempt, and the broker tiers
//! that hold a delivery while it waits.
//!
//! A retry is a message parked in a tier queue (`<ns>.retry.<delay>`) that has no
//! consumer; its TTL expires it back to the work queue. Tiers are named by their delay,
//! so editing the schedule never re-declares a queue with other arguments.

use std::collections::BTreeSet;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::{Error, Result};

/// RabbitMQ expires per-message TTLs only at the head of a queue, so each tier gets one
/// queue TTL that caps its whole jitter band (docs/architecture.md, "Broker topology").
const JITTER_MAX: f64 = 1.25;
const MIN_DELAY: Duration = Duration::from_millis(100);
/// Longer than the broker's 30-minute consumer timeout is fine here: nobody holds the message.
const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The delays between attempts. Attempt 1 happens at once; attempt `n + 1` follows
/// `delays[n - 1]` after a failure; after the last delay's attempt the delivery is exhausted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl RetrySchedule {
    /// A schedule of explicit delays, each from 100 ms to 7 days.
    pub fn try_new(delays: Vec<Duration>) -> Result<Self> {
        if let Some(bad) = delays
            .iter()
            .find(|d| !(MIN_DELAY..=MAX_DELAY).contains(*d))
        {
            return Err(Error::RetrySchedule(format!(
                "delay {bad:?} is outside {MIN_DELAY:?}..={MAX_DELAY:?}"
            )));
        }
        Ok(Self { delays })
    }

    /// An exponential schedule without jitter: jitter is applied per message, inside a tier.
    pub fn exponential(
        first: Duration,
        factor: f32,
        max: Duration,
        retries: usize,
    ) -> Result<Self> {
        let delays = ExponentialBuilder::default()
            .with_min_delay(first)
            .with_factor(factor)
            .with_max_delay(max)
            .with_max_times(retries)
            .build()
            .collect();
        Self::try_new(delays)
    }

    /// How many attempts a delivery gets in all.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).map_or(u32::MAX, |n| n.saturating_add(1))
    }

    /// The tier to wait in after `attempts_made` failed attempts, honouring a receiver's
    /// `Retry-After`; `None` when the schedule is used up.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let planned = *self
            .delays
            .get(usize::try_from(attempts_made).ok()?.checked_sub(1)?)?;
        Some(match retry_after {
            Some(wanted) if wanted > planned => self.tier_covering(wanted),
            _ => planned,
        })
    }

    /// The smallest tier that waits at least `wanted`, or the longest tier.
    pub fn tier_covering(&self, wanted: Duration) -> Duration {
        covering(&self.tiers(), wanted)
    }

    /// Every distinct delay: one tier queue each.
    pub fn tiers(&self) -> BTreeSet<Duration> {
        self.delays.iter().copied().collect()
    }

    /// The delays as configured.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }
}

/// The retry schedule together with the deferral tier: every tier queue a namespace has,
/// computed once from the configuration so that the topology that declares the tiers and
/// the engine that parks tasks in them cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPlan {
    schedule: RetrySchedule,
    deferral: Duration,
    tiers: BTreeSet<Duration>,
}

impl RetryPlan {
    /// The plan of `schedule` plus the deferral tier `deferral` (100 ms to 7 days), where
    /// deliveries wait without using an attempt.
    pub fn try_new(schedule: RetrySchedule, deferral: Duration) -> Result<Self> {
        if !(MIN_DELAY..=MAX_DELAY).contains(&deferral) {
            return Err(Error::RetrySchedule(format!(
                "deferral tier {deferral:?} is outside {MIN_DELAY:?}..={MAX_DELAY:?}"
            )));
        }
        let mut tiers = schedule.tiers();
        tiers.insert(deferral);
        Ok(Self {
            schedule,
            deferral,
            tiers,
        })
    }

    /// The delays between attempts.
    pub fn schedule(&self) -> &RetrySchedule {
        &self.schedule
    }

    /// The deferral tier: deliveries deferred by caps, or handed back at shutdown.
    pub fn deferral(&self) -> Duration {
        self.deferral
    }

    /// Every distinct tier delay, the schedule's and the deferral tier: one queue each.
    pub fn tiers(&self) -> &BTreeSet<Duration> {
        &self.tiers
    }

    /// The smallest of all tiers that waits at least `wanted`, or the longest tier.
    pub fn tier_covering(&self, wanted: Duration) -> Duration {
        covering(&self.tiers, wanted)
    }
}

fn covering(tiers: &BTreeSet<Duration>, wanted: Duration) -> Duration {
    tiers
        .range(wanted..)
        .next()
        .or_else(|| tiers.last())
        .copied()
        .unwrap_or(wanted)
}

/// The queue-name suffix of a tier: the delay in its largest exact unit (`500ms`, `30s`,
/// `2m`, `1h`, `90s`).
pub fn tier_name(delay: Duration) -> String {
    let ms = delay.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The tier queue's `x-message-ttl`: the top of the jitter band.
pub fn tier_ttl(delay: Duration) -> Duration {
    delay.mul_f64(JITTER_MAX)
}

/// A message's `expiration` in a tier: `delay × U(1.0, 1.25)`, so that retries of one
/// outage do not all come back in the same millisecond.
pub fn jittered(delay: Duration, unit_random: f64) -> Duration {
    delay.mul_f64(1.0 + (JITTER_MAX - 1.0) * unit_random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn walks_the_schedule_then_is_exhausted() {
        let s = RetrySchedule::try_new(vec![secs(5), secs(30), secs(120)]).expect("valid");
        assert_eq!(s.max_attempts(), 4);
        assert_eq!(s.next_delay(0, None), None);
        assert_eq!(s.next_delay(1, None), Some(secs(5)));
        assert_eq!(s.next_delay(2, None), Some(secs(30)));
        assert_eq!(s.next_delay(3, None), Some(secs(120)));
        assert_eq!(s.next_delay(4, None), None);
    }

    #[test]
    fn retry_after_picks_the_smallest_covering_tier() {
        let s = RetrySchedule::try_new(vec![secs(5), secs(30), secs(120)]).expect("valid");
        assert_eq!(s.next_delay(1, Some(secs(3))), Some(secs(5)));
        assert_eq!(s.next_delay(1, Some(secs(10))), Some(secs(30)));
        assert_eq!(s.next_delay(1, Some(secs(31))), Some(secs(120)));
        assert_eq!(s.next_delay(1, Some(secs(3600))), Some(secs(120)));
        assert_eq!(s.next_delay(3, Some(secs(1))), Some(secs(120)));
    }

    #[test]
    fn tiers_are_distinct_and_named_by_delay() {
        let s =
            RetrySchedule::try_new(vec![secs(5), secs(90), secs(90), secs(3600)]).expect("valid");
        let names: Vec<String> = s.tiers().into_iter().map(tier_name).collect();
        assert_eq!(names, ["5s", "90s", "1h"]);
        assert_eq!(tier_name(Duration::from_millis(500)), "500ms");
        assert_eq!(tier_name(secs(120)), "2m");
        assert_eq!(tier_name(secs(86_400)), "1d");
    }

    #[test]
    fn jitter_stays_inside_the_tier_ttl() {
        let d = secs(30);
        assert_eq!(jittered(d, 0.0), d);
        assert_eq!(jittered(d, 1.0), tier_ttl(d));
        assert_eq!(jittered(d, 7.0), tier_ttl(d));
        assert_eq!(tier_ttl(d), Duration::from_millis(37_500));
    }

    #[test]
    fn exponential_schedule_comes_from_backon() {
        let s = RetrySchedule::exponential(secs(5), 4.0, secs(3600), 4).expect("valid");
        assert_eq!(s.delays(), [secs(5), secs(20), secs(80), secs(320)]);
    }

    #[test]
    fn a_plan_adds_the_deferral_tier_to_the_schedule() {
        let s = RetrySchedule::try_new(vec![secs(5), secs(30), secs(30)]).expect("valid");
        let plan = RetryPlan::try_new(s.clone(), secs(10)).expect("valid");
        assert_eq!(plan.schedule(), &s);
        assert_eq!(plan.deferral(), secs(10));
        assert_eq!(
            plan.tiers().iter().copied().collect::<Vec<_>>(),
            [secs(5), secs(10), secs(30)]
        );
        assert_eq!(plan.tier_covering(secs(6)), secs(10));
        assert_eq!(plan.tier_covering(secs(31)), secs(30));
        // Retry-After covers with the schedule's tiers only, never the deferral tier.
        assert_eq!(plan.schedule().next_delay(1, Some(secs(6))), Some(secs(30)));
        let same = RetryPlan::try_new(s.clone(), secs(30)).expect("valid");
        assert_eq!(same.tiers().len(), 2);
        assert!(RetryPlan::try_new(s.clone(), Duration::from_millis(10)).is_err());
        assert!(RetryPlan::try_new(s, secs(8 * 24 * 3600)).is_err());
    }

    #[test]
    fn refuses_out_of_range_delays() {
        assert!(RetrySchedule::try_new(vec![Duration::from_millis(10)]).is_err());
        assert!(RetrySchedule::try_new(vec![secs(8 * 24 * 3600)]).is_err());
    }
}
