//! One webhook's adaptive concurrency limit: it finds how many attempts the receiver
//! takes at once before its answers slow down, and stays there.
//!
//! The limit is judged once per round (about one round trip: as many results as the
//! limit). It starts at [`INITIAL_LIMIT`] and doubles every round (slow start) until the
//! first sign of overload; from then on it grows by a tenth a round and shrinks:
//! - to a fraction when a round's mean latency is more than [`TOLERANCE`] × the
//!   receiver's unloaded latency (the least round mean seen lately) and more than
//!   [`MIN_QUEUEING`] above it: requests queue at the receiver. Round means, not single
//!   answers: a receiver whose answers vary widely whatever its load (0.2 to 2 s, say)
//!   has a fast answer now and then, but no round much faster than the others;
//! - by half at once on a timeout, a 429 or a 503, which also pause the webhook for
//!   its `Retry-After`.
//!
//! It grows only in rounds where the limit was reached: a webhook that never uses its
//! limit has shown nothing about a higher one. It never exceeds the ceiling (the
//! webhook's `max_concurrency`, or `delivery.per_endpoint_concurrency`) and never falls
//! below 1. Pure: time comes in as arguments, so every decision is tested without a network.

use std::time::{Duration, Instant};

/// Where every webhook's limit starts.
pub const INITIAL_LIMIT: usize = 8;
/// A round's mean latency above this multiple of the unloaded latency is queueing.
pub const TOLERANCE: f64 = 2.0;
/// Below this much above the unloaded latency, a slower round is noise (a busy client,
/// a scheduler), never queueing at the receiver.
pub const MIN_QUEUEING: Duration = Duration::from_millis(5);
/// How long a latency counts towards the unloaded latency: two such windows are kept,
/// so a receiver that became slower for good is judged by its new pace within two.
pub const BASE_WINDOW: Duration = Duration::from_secs(30);
/// What a round that queued keeps of the limit.
const QUEUEING_BACKOFF: f64 = 0.8;
/// What a timeout, 429 or 503 keeps of the limit.
const OVERLOAD_BACKOFF: f64 = 0.5;
/// How much a round within the tolerance adds, once slow start is over.
const GROWTH: f64 = 0.1;

/// What one attempt's result says about the receiver's load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A 2xx in this long.
    Answered(Duration),
    /// A timeout, 429 or 503: past its capacity; pause it for `retry_after` if given.
    Overloaded {
        /// The receiver's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Nothing about load (a 4xx, a connection refused, another 5xx, an abandoned attempt).
    None,
}

#[derive(Debug, Clone, Copy, Default)]
struct Round {
    results: u32,
    latency_sum: Duration,
    /// The limit was reached, or a delivery was turned away by it, during the round.
    saturated: bool,
}

/// The least round mean seen in the current window and the one before.
#[derive(Debug, Clone, Copy)]
struct BaseLatency {
    window_start: Instant,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl BaseLatency {
    /// Starts a new window when the current one is over.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= BASE_WINDOW {
            // The window just over becomes the previous one; after a silence of two,
            // neither says anything about the receiver now.
            self.previous = (elapsed < 2 * BASE_WINDOW)
                .then_some(self.current)
                .flatten();
            self.current = None;
            self.window_start = now;
        }
    }

    fn record(&mut self, latency: Duration) {
        self.current = Some(self.current.map_or(latency, |c| c.min(latency)));
    }

    fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(c), Some(p)) => Some(c.min(p)),
            (c, p) => c.or(p),
        }
    }
}

/// One webhook's limit and what it is judged on.
#[derive(Debug, Clone)]
pub struct Limiter {
    limit: f64,
    adaptive: bool,
    slow_start: bool,
    round: Round,
    base: BaseLatency,
    /// Recent mean latency of a 2xx, for estimating a wait for a slot.
    recent_latency: Option<Duration>,
    /// Bumped on every decrease and every doubling: results of attempts admitted before
    /// it are not judged again, or one overload would halve the limit once per attempt
    /// then in flight, and a doubling be judged by answers to the half.
    generation: u64,
    paused_until: Option<Instant>,
}

impl Limiter {
    /// A new webhook's limit under `ceiling`; with `adaptive` off, it is the ceiling.
    pub fn new(adaptive: bool, ceiling: usize, now: Instant) -> Self {
        let start = if adaptive { INITIAL_LIMIT } else { ceiling };
        Self {
            limit: start.min(ceiling).max(1) as f64,
            adaptive,
            slow_start: true,
            round: Round::default(),
            base: BaseLatency {
                window_start: now,
                current: None,
                previous: None,
            },
            recent_latency: None,
            generation: 0,
            paused_until: None,
        }
    }

    /// Attempts allowed in flight now under `ceiling`.
    pub fn limit(&self, ceiling: usize) -> usize {
        let ceiling = ceiling.max(1);
        if self.adaptive {
            (self.limit as usize).clamp(1, ceiling)
        } else {
            ceiling
        }
    }

    /// The generation an attempt admitted now belongs to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The limit was reached, or turned a delivery away: the round may grow it.
    pub fn saturated(&mut self) {
        self.round.saturated = true;
    }

    /// Until when the receiver asked not to be sent anything, if that is still ahead.
    pub fn paused_for(&self, now: Instant) -> Option<Duration> {
        self.paused_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Recent mean latency of an answered attempt, if any was.
    pub fn recent_latency(&self) -> Option<Duration> {
        self.recent_latency
    }

    /// How long the delivery `place`d in line (1: next) should wait for a slot under
    /// `ceiling`: slots free at the limit per recent latency, and in slow start the limit
    /// doubles every round. Zero before any answer: the first round is what tells.
    pub fn expected_wait(&self, place: u32, ceiling: usize) -> Duration {
        let latency = self.pace();
        let mut limit = self.limit(ceiling) as f64;
        if !(self.adaptive && self.slow_start) {
            return latency.mul_f64(f64::from(place) / limit);
        }
        let (mut served, mut rounds) = (0.0, 0u32);
        while served < f64::from(place) && rounds < 64 {
            served += limit;
            limit = (limit * 2.0).min(ceiling.max(1) as f64);
            rounds += 1;
        }
        latency * rounds
    }

    /// The latency slots free at: the recent mean, but no more than [`TOLERANCE`] × the
    /// unloaded latency once that is known. The limit shrinks until answers come within
    /// that again, so a higher mean (an overshoot being corrected) does not last, and
    /// judging a wait by it would park a backlog the receiver takes within the second.
    fn pace(&self) -> Duration {
        let recent = self.recent_latency.unwrap_or_default();
        match self.base.get() {
            Some(base) if self.adaptive => recent.min(base.mul_f64(TOLERANCE)),
            _ => recent,
        }
    }

    /// Judges the result of an attempt admitted in `generation`; `pause_max` bounds a
    /// `Retry-After`. Returns the new limit when it changed.
    pub fn record(
        &mut self,
        signal: Signal,
        generation: u64,
        ceiling: usize,
        pause_max: Duration,
        now: Instant,
    ) -> Option<usize> {
        let before = self.limit(ceiling);
        match signal {
            Signal::None => return None,
            Signal::Answered(latency) => {
                self.recent_latency = Some(match self.recent_latency {
                    None => latency,
                    Some(mean) => (mean * 4 + latency) / 5,
                });
                if generation != self.generation || !self.adaptive {
                    return None;
                }
                self.round.results += 1;
                self.round.latency_sum += latency;
                if self.round.results as usize >= before {
                    self.end_round(ceiling, now);
                }
            }
            Signal::Overloaded { retry_after } => {
                if let Some(after) = retry_after {
                    let until = now + after.min(pause_max);
                    self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
                }
                if generation != self.generation || !self.adaptive {
                    return None;
                }
                self.decrease(OVERLOAD_BACKOFF);
            }
        }
        let after = self.limit(ceiling);
        (after != before).then_some(after)
    }

    fn end_round(&mut self, ceiling: usize, now: Instant) {
        let round = std::mem::take(&mut self.round);
        let Some(mean) = round.latency_sum.checked_div(round.results) else {
            return;
        };
        // Judged against the rounds before it, then one of them.
        self.base.roll(now);
        let queueing = self.base.get().is_some_and(|base| {
            mean.saturating_sub(base) > MIN_QUEUEING
                && mean.as_secs_f64() > TOLERANCE * base.as_secs_f64()
        });
        self.base.record(mean);
        if queueing {
            self.decrease(QUEUEING_BACKOFF);
        } else if round.saturated {
            if self.slow_start {
                self.limit = (self.limit * 2.0).min(ceiling.max(1) as f64);
                // The next round judges the doubled limit by its own attempts only: the
                // first answers to come are those admitted at half of it, fast still,
                // and judged with them it would double again past a receiver's knee.
                self.generation += 1;
            } else {
                self.limit = (self.limit * (1.0 + GROWTH)).min(ceiling.max(1) as f64);
            }
        }
    }

    fn decrease(&mut self, keep: f64) {
        self.slow_start = false;
        self.limit = (self.limit * keep).max(1.0);
        self.generation += 1;
        self.round = Round::default();
    }
}

#[cfg(test)]
mod tests;
