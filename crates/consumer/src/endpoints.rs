//! Per-endpoint isolation. An endpoint is one webhook (its id), never a host: caps,
//! rate limits and circuits are per webhook, so one org's failing receiver never slows
//! or trips another's.
//!
//! A delivery that may not go now is deferred through a broker tier, never held here:
//! holding it would keep its source message, and the prefetch window, hostage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::Subscription;
use uuid::Uuid;

/// The isolation settings.
#[derive(Debug, Clone, Copy)]
pub struct EndpointLimits {
    /// Attempts in flight to one webhook, unless the webhook sets its own.
    pub per_endpoint_concurrency: usize,
    /// Consecutive failures that open a webhook's circuit.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit waits before a single probe.
    pub circuit_cool_off: Duration,
}

pub use hookwire_core::disposition::Deferral;

#[derive(Debug, Default)]
struct Endpoint {
    in_flight: usize,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// A half-open circuit lets exactly one probe through.
    probing: bool,
    window_start: Option<Instant>,
    window_count: u32,
}

/// The state of every webhook seen recently. Entries are small and hold no secrets.
#[derive(Debug)]
pub struct Endpoints {
    limits: EndpointLimits,
    state: Arc<Mutex<HashMap<Uuid, Endpoint>>>,
}

/// Permission for one attempt; report its result with [`Admission::finish`].
#[derive(Debug)]
pub struct Admission {
    id: Uuid,
    probe: bool,
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
        }
    }

    /// Admits one attempt to `sub`, or says why it must wait.
    pub fn admit(&self, sub: &Subscription, now: Instant) -> Result<Admission, Deferral> {
        let mut all = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = all.entry(sub.id).or_default();
        let mut probe = false;
        if let Some(until) = e.open_until {
            if now < until {
                return Err(Deferral::CircuitOpen(until - now));
            }
            if e.probing {
                return Err(Deferral::CircuitOpen(self.limits.circuit_cool_off));
            }
            probe = true;
        }
        let cap = sub
            .max_concurrency
            .map_or(self.limits.per_endpoint_concurrency, |n| n as usize);
        if e.in_flight >= cap.max(1) {
            return Err(Deferral::AtCapacity);
        }
        if let Some(limit) = sub.rate_limit_per_sec {
            match e.window_start {
                Some(start) if now.duration_since(start) < Duration::from_secs(1) => {
                    if e.window_count >= limit {
                        return Err(Deferral::RateLimited);
                    }
                    e.window_count += 1;
                }
                _ => {
                    e.window_start = Some(now);
                    e.window_count = 1;
                }
            }
        }
        e.in_flight += 1;
        e.probing |= probe;
        Ok(Admission {
            id: sub.id,
            probe,
            state: self.state.clone(),
            limits: self.limits,
            finished: false,
        })
    }
}

impl Admission {
    /// Records the attempt's result: a success closes the circuit; enough consecutive
    /// failures open it.
    pub fn finish(mut self, succeeded: bool, now: Instant) {
        self.release(Some(succeeded), now);
    }

    fn release(&mut self, result: Option<bool>, now: Instant) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut all = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(e) = all.get_mut(&self.id) else {
            return;
        };
        e.in_flight = e.in_flight.saturating_sub(1);
        if self.probe {
            e.probing = false;
        }
        match result {
            Some(true) => {
                e.consecutive_failures = 0;
                e.open_until = None;
            }
            Some(false) => {
                e.consecutive_failures = e.consecutive_failures.saturating_add(1);
                if self.probe || e.consecutive_failures >= self.limits.circuit_failure_threshold {
                    e.open_until = Some(now + self.limits.circuit_cool_off);
                }
            }
            // Abandoned (shutdown hand-back): no verdict on the endpoint.
            None => {}
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release(None, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> EndpointLimits {
        EndpointLimits {
            per_endpoint_concurrency: 2,
            circuit_failure_threshold: 3,
            circuit_cool_off: Duration::from_secs(10),
        }
    }

    fn sub() -> Subscription {
        let secret = hookwire_core::Secret::from_bytes(vec![0; 32]).expect("key");
        Subscription::new("acme", "https://example.com/", "", vec![], secret, 0)
    }

    #[test]
    fn caps_in_flight_per_webhook_not_per_host() {
        let endpoints = Endpoints::new(limits());
        let (a, b) = (sub(), sub());
        let now = Instant::now();
        let first = endpoints.admit(&a, now).expect("1st");
        let _second = endpoints.admit(&a, now).expect("2nd");
        assert_eq!(endpoints.admit(&a, now).err(), Some(Deferral::AtCapacity));
        assert!(
            endpoints.admit(&b, now).is_ok(),
            "another webhook on the same host is unaffected"
        );
        first.finish(true, now);
        assert!(
            endpoints.admit(&a, now).is_ok(),
            "a finished attempt frees its slot"
        );
        let mut own_cap = sub();
        own_cap.max_concurrency = Some(1);
        let _only = endpoints.admit(&own_cap, now).expect("1st");
        assert_eq!(
            endpoints.admit(&own_cap, now).err(),
            Some(Deferral::AtCapacity)
        );
    }

    #[test]
    fn circuit_opens_after_consecutive_failures_and_probes_once() {
        let endpoints = Endpoints::new(limits());
        let s = sub();
        let t0 = Instant::now();
        for _ in 0..3 {
            endpoints.admit(&s, t0).expect("closed").finish(false, t0);
        }
        assert_eq!(
            endpoints.admit(&s, t0 + Duration::from_secs(4)).err(),
            Some(Deferral::CircuitOpen(Duration::from_secs(6)))
        );
        let after = t0 + Duration::from_secs(10);
        let probe = endpoints
            .admit(&s, after)
            .expect("one probe after the cool-off");
        assert!(
            matches!(endpoints.admit(&s, after), Err(Deferral::CircuitOpen(_))),
            "only one probe"
        );
        probe.finish(false, after);
        assert!(
            matches!(endpoints.admit(&s, after), Err(Deferral::CircuitOpen(_))),
            "a failed probe re-opens"
        );
        let later = after + Duration::from_secs(10);
        endpoints
            .admit(&s, later)
            .expect("probe")
            .finish(true, later);
        assert!(
            endpoints.admit(&s, later).is_ok(),
            "a successful probe closes it"
        );
    }

    #[test]
    fn a_success_resets_the_failure_count_and_dropping_is_neutral() {
        let endpoints = Endpoints::new(limits());
        let s = sub();
        let now = Instant::now();
        for _ in 0..2 {
            endpoints.admit(&s, now).expect("closed").finish(false, now);
        }
        endpoints.admit(&s, now).expect("closed").finish(true, now);
        for _ in 0..2 {
            endpoints.admit(&s, now).expect("closed").finish(false, now);
        }
        drop(endpoints.admit(&s, now).expect("closed"));
        assert!(
            endpoints.admit(&s, now).is_ok(),
            "2 failures since the success: still closed"
        );
    }

    #[test]
    fn rate_limit_per_second() {
        let endpoints = Endpoints::new(limits());
        let mut s = sub();
        s.rate_limit_per_sec = Some(2);
        let now = Instant::now();
        endpoints.admit(&s, now).expect("1").finish(true, now);
        endpoints.admit(&s, now).expect("2").finish(true, now);
        assert_eq!(endpoints.admit(&s, now).err(), Some(Deferral::RateLimited));
        assert!(
            endpoints.admit(&s, now + Duration::from_secs(1)).is_ok(),
            "a new second"
        );
    }
}
