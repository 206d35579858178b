//! Per-endpoint isolation. An endpoint is one webhook (its id), never a host: limits,
//! rate limits and circuits are per webhook, so one org's failing receiver never slows
//! or trips another's.
//!
//! Each webhook's concurrency limit adapts to its receiver ([`limiter`]), under the
//! webhook's `max_concurrency` or `delivery.per_endpoint_concurrency` as a hard ceiling.
//!
//! A delivery that may not go now waits here for the webhook's next slot
//! ([`Endpoints::wait_for_slot`]) when that wait is short ([`Endpoints::expected_wait`]);
//! otherwise it is deferred through a broker tier: holding it long would keep its source
//! message, and the prefetch window, hostage. The exception bounds deferral: a delivery
//! the webhook's limit or rate limit has deferred past the bound waits here however long.
//! Held deliveries take slots ahead of every delivery deferred less long; at most
//! [`EndpointLimits::max_held`] deliveries wait so at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::Subscription;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::telemetry;

/// The isolation settings.
#[derive(Debug, Clone, Copy)]
pub struct EndpointLimits {
    /// The most attempts in flight to one webhook, unless the webhook sets its own.
    pub per_endpoint_concurrency: usize,
    /// Each webhook's limit adapts to its receiver under that ceiling; off, it is the
    /// ceiling.
    pub adaptive: bool,
    /// A delivery expected to wait longer than this for its webhook's slot is parked in
    /// the deferral tier; one that waits in process is parked once it has waited this
    /// long and still expects to wait longer.
    pub max_slot_wait: Duration,
    /// The longest a delivery waits in process for a slot before the deferral bound:
    /// the deferral tier's delay, which parking would cost it anyway.
    pub max_short_wait: Duration,
    /// When a webhook's circuit opens, and how it closes again.
    pub circuit: CircuitLimits,
    /// Deliveries past the deferral bound that may wait in process for their webhook's
    /// next slot, over all webhooks; past this they are parked again.
    pub max_held: usize,
}

/// A webhook's circuit breaker: judged on a failure rate over a sliding window, with a
/// half-open state that admits several trials and a bound on any delivery's deferral.
#[derive(Debug, Clone, Copy)]
pub struct CircuitLimits {
    /// Failures within the window needed, at the least, before the rate can open it.
    pub min_failures: u32,
    /// Share of failed attempts within the window that opens it (0 < r <= 1).
    pub failure_rate: f64,
    /// The sliding window.
    pub window: Duration,
    /// How long it stays open before it turns half-open.
    pub cool_off: Duration,
    /// Trial attempts a half-open circuit admits.
    pub half_open_trials: u32,
    /// For this long after turning half-open, trials go only to deliveries already
    /// attempted: a fresh delivery's first attempt is the one a half-working receiver
    /// fails, and its retries the ones it answers. Every delivery the open circuit
    /// deferred comes back within its tier, so this is that tier.
    pub prefer_attempted_for: Duration,
    /// A delivery deferred this long by the circuit gets an attempt regardless.
    pub max_deferral: Duration,
}

pub use hookwire_core::disposition::Deferral;

mod held;
pub mod limiter;

use limiter::Limiter;
pub use limiter::Signal;

/// What the circuit needs to know about the delivery that asks for an attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct Candidate {
    /// It had an attempt already (`task.attempts > 0`).
    pub attempted: bool,
    /// How long it has been deferred since its last attempt, if it was.
    pub deferred_for: Option<Duration>,
}

/// A circuit's state, as the API and the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts go ahead; their results fill the window.
    Closed,
    /// Deliveries are deferred without a request.
    Open,
    /// A few trial attempts decide whether it closes.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// One webhook's circuit as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitSnapshot {
    /// Its state.
    pub state: CircuitState,
    /// Failed share of the attempts in the window (closed), or of the trials so far
    /// (half-open); 0 without any.
    pub failure_rate: f64,
    /// While open: for how much longer.
    pub open_for: Option<Duration>,
    /// Attempts it may have in flight now: its adaptive limit, at most its ceiling.
    pub concurrency_limit: usize,
    /// Attempts in flight to it now.
    pub in_flight: usize,
}

#[derive(Debug, Clone, Copy)]
enum Circuit {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        since: Instant,
        admitted: u32,
        successes: u32,
        failures: u32,
    },
}

impl Circuit {
    fn state(&self) -> CircuitState {
        match self {
            Self::Closed => CircuitState::Closed,
            Self::Open { .. } => CircuitState::Open,
            Self::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

const BUCKETS: usize = 10;

/// A time-based sliding window in [`BUCKETS`] buckets: bounded memory at any rate.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    /// (bucket number since `origin`, calls, failures)
    buckets: [(u64, u32, u32); BUCKETS],
}

impl Window {
    fn bucket_of(origin: Instant, window: Duration, now: Instant) -> u64 {
        let width = (window.as_millis() as u64 / BUCKETS as u64).max(1);
        now.saturating_duration_since(origin).as_millis() as u64 / width
    }

    fn record(&mut self, bucket: u64, failed: bool) {
        let slot = &mut self.buckets[(bucket % BUCKETS as u64) as usize];
        if slot.0 != bucket || slot.1 == 0 {
            *slot = (bucket, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u32::from(failed);
    }

    /// (calls, failures) in the window ending at `bucket`.
    fn totals(&self, bucket: u64) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|b| b.1 > 0 && b.0 <= bucket && bucket - b.0 < BUCKETS as u64)
            .fold((0, 0), |(c, f), b| (c + b.1, f + b.2))
    }
}

/// A place in a webhook's queue of held deliveries: the longest deferred goes first.
type Ticket = (u64, u64);

#[derive(Debug)]
struct Endpoint {
    in_flight: usize,
    limiter: Limiter,
    /// The ceiling at its last admission, for showing its limit.
    ceiling: usize,
    /// Held deliveries waiting for a slot, each with what wakes it; while any waits, no
    /// other delivery takes one.
    waiting: BTreeMap<Ticket, Arc<Notify>>,
    circuit: Circuit,
    /// Bumped on every transition: a result from an attempt admitted under an earlier
    /// state says nothing about the current one.
    epoch: u64,
    origin: Instant,
    window: Window,
    /// The retries among the attempts of the window (and of the half-open trials); not
    /// cleared when the circuit closes.
    retries: Window,
    rate_window_start: Option<Instant>,
    rate_window_count: u32,
}

impl Endpoint {
    fn new(limiter: Limiter, ceiling: usize, now: Instant) -> Self {
        telemetry::circuits(CircuitState::Closed.as_str(), 1.0);
        Self {
            in_flight: 0,
            limiter,
            ceiling,
            waiting: BTreeMap::new(),
            circuit: Circuit::Closed,
            epoch: 0,
            origin: now,
            window: Window::default(),
            retries: Window::default(),
            rate_window_start: None,
            rate_window_count: 0,
        }
    }

    /// Wakes the first in line of the held deliveries, if any: only it may take the slot
    /// that freed (waking them all would cost every waiter a look at every slot).
    fn wake_first(&self) {
        if let Some((_, first)) = self.waiting.first_key_value() {
            first.notify_one();
        }
    }

    fn transition(&mut self, to: Circuit) {
        let (from, next) = (self.circuit.state(), to.state());
        self.circuit = to;
        self.epoch += 1;
        if matches!(to, Circuit::Closed) {
            self.window = Window::default();
        }
        if from != next {
            telemetry::circuits(from.as_str(), -1.0);
            telemetry::circuits(next.as_str(), 1.0);
        }
        telemetry::circuit_transition(next.as_str());
    }
}

/// The state of every webhook seen recently. Entries are small and hold no secrets.
#[derive(Debug, Clone)]
pub struct Endpoints {
    limits: EndpointLimits,
    state: Arc<Mutex<HashMap<Uuid, Endpoint>>>,
    /// Deliveries waiting in [`Endpoints::wait_for_slot`] now.
    held: Arc<AtomicUsize>,
    /// Tie-breaker between tickets deferred since the same millisecond.
    tickets: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Closed: its result goes into the window.
    Counted,
    /// One of the half-open circuit's trials.
    Trial,
    /// Admitted past `max_deferral` while the circuit holds others back: no verdict.
    Forced,
}

/// Permission for one attempt; report its result with [`Admission::finish`].
#[derive(Debug)]
pub struct Admission {
    id: Uuid,
    kind: Kind,
    /// The delivery had an attempt already.
    retry: bool,
    epoch: u64,
    /// The limiter's generation when it was admitted.
    generation: u64,
    ceiling: usize,
    state: Arc<Mutex<HashMap<Uuid, Endpoint>>>,
    limits: EndpointLimits,
    finished: bool,
}

impl Endpoints {
    /// No state yet.
    pub fn new(limits: EndpointLimits) -> Self {
        Self {
            limits,
            state: Arc::default(),
            held: Arc::default(),
            tickets: Arc::default(),
        }
    }

    /// `sub`'s hard ceiling: its own `max_concurrency`, or the default.
    fn ceiling(&self, sub: &Subscription) -> usize {
        sub.max_concurrency
            .map_or(self.limits.per_endpoint_concurrency, |n| n as usize)
            .max(1)
    }

    /// `sub`'s state, made if this node has not seen it yet.
    fn entry<'a>(
        &self,
        all: &'a mut HashMap<Uuid, Endpoint>,
        sub: &Subscription,
        now: Instant,
    ) -> &'a mut Endpoint {
        all.entry(sub.id).or_insert_with(|| {
            let ceiling = self.ceiling(sub);
            let limiter = Limiter::new(self.limits.adaptive, ceiling, now);
            telemetry::concurrency_limit(&sub.id, limiter.limit(ceiling));
            Endpoint::new(limiter, ceiling, now)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Endpoint>> {
        // Plain counters and sets: still consistent after a panic elsewhere.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits one attempt of `candidate` to `sub`, or says why it must wait. While
    /// deliveries are held for `sub`'s next slot, it is theirs: this one is at capacity.
    pub fn admit(
        &self,
        sub: &Subscription,
        candidate: Candidate,
        now: Instant,
    ) -> Result<Admission, Deferral> {
        self.admit_as(sub, candidate, now, None)
    }

    fn admit_as(
        &self,
        sub: &Subscription,
        candidate: Candidate,
        now: Instant,
        ticket: Option<Ticket>,
    ) -> Result<Admission, Deferral> {
        let c = self.limits.circuit;
        let mut all = self.lock();
        let e = self.entry(&mut all, sub, now);
        let forced = candidate.deferred_for.is_some_and(|d| d >= c.max_deferral);
        if let Circuit::Open { until } = e.circuit
            && now >= until
        {
            e.transition(Circuit::HalfOpen {
                since: now,
                admitted: 0,
                successes: 0,
                failures: 0,
            });
        }
        let kind = match e.circuit {
            Circuit::Closed => Kind::Counted,
            Circuit::Open { .. } if forced => Kind::Forced,
            Circuit::Open { until } => return Err(Deferral::CircuitOpen(until - now)),
            Circuit::HalfOpen {
                since, admitted, ..
            } => {
                let preferring = now.saturating_duration_since(since) < c.prefer_attempted_for;
                if admitted >= c.half_open_trials || (preferring && !candidate.attempted) {
                    if !forced {
                        // Until the trials decide, or until the trials' preference is
                        // over: the latter only matters to fresh deliveries.
                        let wait = if admitted >= c.half_open_trials {
                            Duration::ZERO
                        } else {
                            c.prefer_attempted_for - now.saturating_duration_since(since)
                        };
                        return Err(Deferral::CircuitOpen(wait));
                    }
                    Kind::Forced
                } else {
                    Kind::Trial
                }
            }
        };
        if let Some(rest) = e.limiter.paused_for(now) {
            return Err(Deferral::RetryAfter(rest));
        }
        let ceiling = self.ceiling(sub);
        e.ceiling = ceiling;
        let limit = e.limiter.limit(ceiling);
        // Held deliveries go first, the longest deferred of them first.
        let next_in_line = match ticket {
            None => e.waiting.is_empty(),
            Some(ticket) => e.waiting.first_key_value().map(|(first, _)| *first) == Some(ticket),
        };
        if !next_in_line || e.in_flight >= limit {
            if e.in_flight >= limit {
                e.limiter.saturated();
            }
            return Err(Deferral::AtCapacity);
        }
        if let Some(limit) = sub.rate_limit_per_sec {
            match e.rate_window_start {
                Some(start) if now.duration_since(start) < Duration::from_secs(1) => {
                    if e.rate_window_count >= limit {
                        return Err(Deferral::RateLimited);
                    }
                    e.rate_window_count += 1;
                }
                _ => {
                    e.rate_window_start = Some(now);
                    e.rate_window_count = 1;
                }
            }
        }
        e.in_flight += 1;
        if e.in_flight >= limit {
            e.limiter.saturated();
        }
        if let (Kind::Trial, Circuit::HalfOpen { admitted, .. }) = (kind, &mut e.circuit) {
            *admitted += 1;
        }
        Ok(Admission {
            id: sub.id,
            kind,
            retry: candidate.attempted,
            epoch: e.epoch,
            generation: e.limiter.generation(),
            ceiling,
            state: self.state.clone(),
            limits: self.limits,
            finished: false,
        })
    }

    /// The circuit of webhook `id` at `now`, if this node has seen it.
    pub fn snapshot(&self, id: &Uuid, now: Instant) -> Option<CircuitSnapshot> {
        let all = self.lock();
        let e = all.get(id)?;
        let rate = |calls: u32, failures: u32| {
            if calls == 0 {
                0.0
            } else {
                f64::from(failures) / f64::from(calls)
            }
        };
        let (state, failure_rate, open_for) = match e.circuit {
            Circuit::Closed => {
                let bucket = Window::bucket_of(e.origin, self.limits.circuit.window, now);
                let (calls, failures) = e.window.totals(bucket);
                (CircuitState::Closed, rate(calls, failures), None)
            }
            // Turns half-open at the next delivery; shown as it will be.
            Circuit::Open { until } if now >= until => (CircuitState::HalfOpen, 0.0, None),
            Circuit::Open { until } => (CircuitState::Open, 1.0, Some(until - now)),
            Circuit::HalfOpen {
                successes,
                failures,
                ..
            } => (
                CircuitState::HalfOpen,
                rate(successes + failures, failures),
                None,
            ),
        };
        Some(CircuitSnapshot {
            state,
            failure_rate,
            open_for,
            concurrency_limit: e.limiter.limit(e.ceiling),
            in_flight: e.in_flight,
        })
    }
}

impl Admission {
    /// Records the attempt's result: a closed circuit opens on its window's failure
    /// rate, a half-open one closes or re-opens on its trials'.
    pub fn finish(self, succeeded: bool, now: Instant) {
        self.finish_with(succeeded, Signal::None, now);
    }

    /// Like [`Self::finish`], and the webhook's limit judges what the result says of
    /// the receiver's load.
    pub fn finish_with(mut self, succeeded: bool, signal: Signal, now: Instant) {
        self.release(Some(succeeded), signal, now);
    }

    fn release(&mut self, result: Option<bool>, signal: Signal, now: Instant) {
        if self.finished {
            return;
        }
        self.finished = true;
        let c = self.limits.circuit;
        let mut all = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(e) = all.get_mut(&self.id) else {
            return;
        };
        e.in_flight = e.in_flight.saturating_sub(1);
        let pause_max = c.max_deferral;
        if let Some(limit) = e
            .limiter
            .record(signal, self.generation, self.ceiling, pause_max, now)
        {
            telemetry::concurrency_limit(&self.id, limit);
        }
        e.wake_first();
        if e.epoch != self.epoch || self.kind == Kind::Forced {
            return;
        }
        let open = Circuit::Open {
            until: now + c.cool_off,
        };
        match (&mut e.circuit, result) {
            (Circuit::Closed, Some(succeeded)) => {
                let bucket = Window::bucket_of(e.origin, c.window, now);
                e.window.record(bucket, !succeeded);
                if self.retry {
                    e.retries.record(bucket, !succeeded);
                }
                let (calls, failures) = e.window.totals(bucket);
                // A receiver whose retries succeed is up, however many first attempts
                // it fails (one that answers every delivery's first attempt 500, say):
                // its schedule serves it, and the circuit would only hold it back.
                let (retries, retry_failures) = e.retries.totals(bucket);
                let retries_succeed =
                    retries > 0 && f64::from(retry_failures) < c.failure_rate * f64::from(retries);
                if !succeeded
                    && !retries_succeed
                    && failures >= c.min_failures
                    && f64::from(failures) >= c.failure_rate * f64::from(calls)
                {
                    e.transition(open);
                }
            }
            (Circuit::HalfOpen { admitted, .. }, None) => {
                // Abandoned (shutdown hand-back, a 4xx): another delivery may try.
                *admitted = admitted.saturating_sub(1);
            }
            (
                Circuit::HalfOpen {
                    successes,
                    failures,
                    ..
                },
                Some(succeeded),
            ) => {
                // Kept across the close: trials that were retries and succeeded keep
                // fresh first attempts that fail from opening it again at once.
                if self.retry {
                    let bucket = Window::bucket_of(e.origin, c.window, now);
                    e.retries.record(bucket, !succeeded);
                }
                if succeeded {
                    *successes += 1;
                } else {
                    *failures += 1;
                }
                let trials = f64::from(c.half_open_trials);
                let undecided = c.half_open_trials.saturating_sub(*successes + *failures);
                if f64::from(*failures) >= c.failure_rate * trials {
                    e.transition(open);
                } else if f64::from(*failures + undecided) < c.failure_rate * trials {
                    // Even if every trial still out fails, the rate stays below.
                    e.transition(Circuit::Closed);
                }
            }
            // Abandoned (shutdown hand-back) or a 4xx: no verdict on the endpoint.
            (Circuit::Closed, None) | (Circuit::Open { .. }, _) => {}
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release(None, Signal::None, Instant::now());
    }
}

#[cfg(test)]
mod tests;
