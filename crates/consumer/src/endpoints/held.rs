//! Deliveries waiting in process for their webhook's next slot: in the order they were
//! first deferred. Those past the deferral bound, whose wait has no end of its own, are
//! never more than [`max_held`](super::EndpointLimits::max_held) at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hookwire_core::Subscription;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Admission, Candidate, Deferral, Endpoint, Endpoints, Ticket};

/// Leaves a webhook's queue of held deliveries when dropped (taken a slot, or cancelled).
struct Place<'a> {
    endpoints: &'a Endpoints,
    id: Uuid,
    ticket: Ticket,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut all = self.endpoints.lock();
        self.endpoints.held.fetch_sub(1, Ordering::SeqCst);
        if let Some(e) = all.get_mut(&self.id)
            && e.waiting.remove(&self.ticket).is_some()
        {
            // The next in line may take a slot this one did not.
            e.wake_first();
        }
    }
}

/// How often a held delivery looks again without being woken: a safety net only.
const HELD_RECHECK: Duration = Duration::from_millis(250);

impl Endpoints {
    /// How long a delivery `deferral` turned away from `sub` can expect to wait here for
    /// a slot: its place in line over the rate at which slots free (the limit over the
    /// recent latency), after the receiver's `Retry-After` if it asked for a pause; or
    /// until the rate window is over.
    /// `None` for an open circuit: that is a wait for a tier.
    pub fn expected_wait(
        &self,
        sub: &Subscription,
        deferral: Deferral,
        now: Instant,
    ) -> Option<Duration> {
        let all = self.lock();
        let e = all.get(&sub.id)?;
        self.expected_wait_at(e, sub, deferral, e.waiting.len() as u32 + 1, now)
    }

    /// [`Self::expected_wait`] of the delivery `place`d in `e`'s line (1: next).
    fn expected_wait_at(
        &self,
        e: &Endpoint,
        sub: &Subscription,
        deferral: Deferral,
        place: u32,
        now: Instant,
    ) -> Option<Duration> {
        match deferral {
            Deferral::CircuitOpen(_) => None,
            // The pause, then its place in line at the pace slots free.
            Deferral::RetryAfter(rest) => {
                Some(rest + e.limiter.expected_wait(place, self.ceiling(sub)))
            }
            Deferral::AtCapacity => Some(e.limiter.expected_wait(place, self.ceiling(sub))),
            Deferral::RateLimited => {
                let window_left = e.rate_window_start.map_or(Duration::ZERO, |start| {
                    (start + Duration::from_secs(1)).saturating_duration_since(now)
                });
                let per_second = sub.rate_limit_per_sec.unwrap_or(u32::MAX).max(1);
                Some(window_left + Duration::from_secs(1) * (place - 1) / per_second)
            }
        }
    }

    /// Holds a delivery `sub`'s limit or rate limit turned away until it can be
    /// admitted: held deliveries take `sub`'s slots in the order they were first
    /// deferred (`deferred_since_ms`), before any delivery that is not held. `Err` when it
    /// may not be held (past the deferral bound, with already
    /// [`max_held`](super::EndpointLimits::max_held) held), the circuit holds it back,
    /// the receiver asked for a pause longer than `max_slot_wait`, or a short wait is
    /// over ([`Self::short_wait_over`]): park it instead. Dropping the future gives its
    /// place up.
    ///
    /// Only a wait `past_bound` counts against `max_held`: such a wait has no end of its
    /// own. A short wait ends within `max_short_wait`, so however many wait, the prefetch
    /// window is held up for no longer than that; capping them too would park a
    /// backlog's excess at once, to come back in one burst after the deferral tier's
    /// delay while the receiver idles.
    pub async fn wait_for_slot(
        &self,
        sub: &Subscription,
        candidate: Candidate,
        deferred_since_ms: u64,
        past_bound: bool,
    ) -> Result<Admission, Deferral> {
        let ticket = (
            deferred_since_ms,
            self.tickets.fetch_add(1, Ordering::Relaxed),
        );
        let freed = {
            // Counted under the lock, with the ticket, so the two always agree.
            let mut all = self.lock();
            if past_bound && self.held.load(Ordering::SeqCst) >= self.limits.max_held {
                return Err(Deferral::AtCapacity);
            }
            self.held.fetch_add(1, Ordering::SeqCst);
            let e = self.entry(&mut all, sub, Instant::now());
            let woken = Arc::new(Notify::new());
            e.waiting.insert(ticket, woken.clone());
            woken
        };
        let _place = Place {
            endpoints: self,
            id: sub.id,
            ticket,
        };
        let started = Instant::now();
        loop {
            let woken = freed.notified();
            tokio::pin!(woken);
            // Registered before looking, so that a slot freed in between wakes it.
            woken.as_mut().enable();
            let now = Instant::now();
            let deferral = match self.admit_as(sub, candidate, now, Some(ticket)) {
                Ok(admission) => return Ok(admission),
                Err(deferral) => deferral,
            };
            let recheck = match deferral {
                Deferral::RateLimited => self.rate_window_left(&sub.id, now),
                Deferral::AtCapacity => HELD_RECHECK,
                Deferral::RetryAfter(rest) if rest <= self.limits.max_slot_wait => rest,
                circuit => return Err(circuit),
            };
            if !past_bound && self.short_wait_over(sub, deferral, ticket, started, now) {
                return Err(deferral);
            }
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep(recheck.min(HELD_RECHECK)) => {}
            }
        }
    }

    /// Whether a short wait begun at `started` ends now: after `max_short_wait` in all,
    /// or once past `max_slot_wait` if the delivery's expected wait, at its own place in
    /// line now, is longer than `max_slot_wait`. One that has moved up the line while its
    /// receiver sped up waits on: parked, it would come back only after the deferral
    /// tier's delay, and its receiver might have drained the line and idled by then.
    fn short_wait_over(
        &self,
        sub: &Subscription,
        deferral: Deferral,
        ticket: Ticket,
        started: Instant,
        now: Instant,
    ) -> bool {
        let waited = now.saturating_duration_since(started);
        if waited >= self.limits.max_short_wait {
            return true;
        }
        if waited < self.limits.max_slot_wait {
            return false;
        }
        let all = self.lock();
        let Some(e) = all.get(&sub.id) else {
            return true;
        };
        let place = e.waiting.range(..ticket).count() as u32 + 1;
        self.expected_wait_at(e, sub, deferral, place, now)
            .is_none_or(|wait| wait > self.limits.max_slot_wait)
    }

    /// How long until `id`'s rate window starts over.
    fn rate_window_left(&self, id: &Uuid, now: Instant) -> Duration {
        let all = self.lock();
        all.get(id)
            .and_then(|e| e.rate_window_start)
            .map_or(Duration::ZERO, |start| {
                (start + Duration::from_secs(1)).saturating_duration_since(now)
            })
    }

    /// Deliveries held in [`Self::wait_for_slot`] now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}
