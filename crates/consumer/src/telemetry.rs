//! Every metric the engine records, named in one place (Prometheus conventions:
//! `hookwire_…_total` counters, `_seconds` histograms). Without an installed recorder
//! (tests, tools) these calls cost next to nothing.
//!
//! What every delivery records goes through handles kept here, registered once per label
//! value: a `metrics` macro builds its key (allocating its labels) and looks it up in the
//! recorder's registry on every call. The process's recorder is installed before any
//! engine runs, so the handles belong to it.

use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use hookwire_core::DeadReason;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// One metric's handles, one per value of its single varying label. The values are few
/// (catalog event types, outcome names), so a scan beats hashing.
struct Handles<H> {
    by_label: RwLock<Vec<(Box<str>, H)>>,
    register: fn(String) -> H,
}

impl<H> Handles<H> {
    const fn new(register: fn(String) -> H) -> Self {
        Self {
            by_label: RwLock::new(Vec::new()),
            register,
        }
    }

    fn with(&self, label: &str, use_handle: impl FnOnce(&H)) {
        let known = self.by_label.read().unwrap_or_else(|e| e.into_inner());
        if let Some((_, handle)) = known.iter().find(|(l, _)| **l == *label) {
            return use_handle(handle);
        }
        drop(known);
        let mut known = self.by_label.write().unwrap_or_else(|e| e.into_inner());
        let at = match known.iter().position(|(l, _)| **l == *label) {
            Some(at) => at,
            None => {
                known.push((label.into(), (self.register)(label.to_owned())));
                known.len() - 1
            }
        };
        use_handle(&known[at].1);
    }
}

static ACCEPTED: Handles<Counter> = Handles::new(
    |event_type| counter!("hookwire_events_consumed_total", "event_type" => event_type, "result" => "accepted"),
);
static DELIVERIES: Handles<Counter> =
    Handles::new(|outcome| counter!("hookwire_deliveries_total", "outcome" => outcome));
static ATTEMPT_DURATION: Handles<Histogram> =
    Handles::new(|outcome| histogram!("hookwire_attempt_duration_seconds", "outcome" => outcome));
static DELIVERY_LAG: LazyLock<Histogram> =
    LazyLock::new(|| histogram!("hookwire_delivery_lag_seconds"));
static IN_FLIGHT: LazyLock<Gauge> = LazyLock::new(|| gauge!("hookwire_deliveries_in_flight"));

/// An event came off the events queue and was accepted. Only catalog types are labels,
/// so a producer cannot blow up the label set.
pub(crate) fn event_accepted(event_type: &str) {
    ACCEPTED.with(event_type, |c| c.increment(1));
}

/// An event came off the events queue and broke the wire contract: `reason` is its
/// dead-letter reason.
pub(crate) fn event_rejected(reason: &'static str) {
    counter!("hookwire_events_consumed_total", "event_type" => "invalid", "result" => reason)
        .increment(1);
}

/// An event of an organization without any webhook: its body is not kept for resending.
/// An event whose id the archive already holds arrived again, not redelivered: dropped.
pub(crate) fn event_repeated() {
    counter!("hookwire_events_repeated_total").increment(1);
}

pub(crate) fn payload_not_kept_without_webhooks() {
    counter!("hookwire_payloads_not_kept_total", "reason" => "no_webhooks").increment(1);
}

/// An HTTP attempt finished.
pub(crate) fn attempt_finished(outcome: &'static str, latency: Duration) {
    ATTEMPT_DURATION.with(outcome, |h| h.record(latency.as_secs_f64()));
}

/// What became of a delivery after an attempt, or instead of one.
pub(crate) fn delivery(outcome: &'static str) {
    DELIVERIES.with(outcome, |c| c.increment(1));
}

/// From the producer's publish to the receiver's 2xx.
pub(crate) fn end_to_end_lag(lag: Duration) {
    DELIVERY_LAG.record(lag.as_secs_f64());
}

/// A retry was parked in a tier.
pub(crate) fn retry_scheduled(tier: &str) {
    counter!("hookwire_retries_scheduled_total", "tier" => tier.to_owned()).increment(1);
}

/// A message went to the dead queue.
pub(crate) fn dead_lettered(reason: DeadReason) {
    counter!("hookwire_dead_letters_total", "reason" => reason.as_str()).increment(1);
}

/// A webhook was disabled by hookwire.
pub(crate) fn webhook_disabled() {
    counter!("hookwire_webhooks_disabled_total").increment(1);
}

/// Attempts in flight right now.
pub(crate) fn in_flight(delta: f64) {
    IN_FLIGHT.increment(delta);
}

/// A queue's ready messages, as the last poll saw them.
pub(crate) fn queue_depth(queue: &str, messages: u32) {
    gauge!("hookwire_queue_messages", "queue" => queue.to_owned()).set(f64::from(messages));
}

/// A delivery was deferred without an attempt, and why.
pub(crate) fn deferral(deferral: hookwire_core::disposition::Deferral) {
    use hookwire_core::disposition::Deferral;
    let cause = match deferral {
        Deferral::AtCapacity => "at_capacity",
        Deferral::RateLimited => "rate_limited",
        Deferral::CircuitOpen(_) => "circuit_open",
        Deferral::RetryAfter(_) => "retry_after",
    };
    counter!("hookwire_deferrals_total", "cause" => cause).increment(1);
}

/// A delivery its webhook's limit turned away got a slot after a short wait in process.
pub(crate) fn waited_for_slot() {
    counter!("hookwire_deliveries_waited_for_slot_total").increment(1);
}

/// A delivery deferred past the bound by its webhook's cap or rate limit, held in
/// process, got a slot `deferred` after it was first deferred.
pub(crate) fn held_for_slot(deferred: Duration) {
    counter!("hookwire_deliveries_held_total").increment(1);
    histogram!("hookwire_held_deferral_seconds").record(deferred.as_secs_f64());
}

/// A large fan-out had at most `publishes` tasks awaiting their confirms at once, each
/// with a copy of the body: the gauge keeps the most since start.
pub(crate) fn fanout_in_flight(publishes: usize) {
    let most = MAX_FANOUT_IN_FLIGHT
        .fetch_max(publishes, std::sync::atomic::Ordering::Relaxed)
        .max(publishes);
    gauge!("hookwire_fanout_publishes_in_flight_max").set(most as f64);
}

static MAX_FANOUT_IN_FLIGHT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Webhook `id`'s concurrency limit changed to `limit`. One series per webhook this node
/// delivered to since it started: bounded by the webhooks there are.
pub(crate) fn concurrency_limit(id: &uuid::Uuid, limit: usize) {
    gauge!("hookwire_webhook_concurrency_limit", "webhook_id" => id.to_string()).set(limit as f64);
}

/// Webhooks whose circuit is in `state` on this node (`closed`, `open`, `half_open`).
pub(crate) fn circuits(state: &'static str, delta: f64) {
    gauge!("hookwire_circuits", "state" => state).increment(delta);
}

/// A circuit turned `to` a state.
pub(crate) fn circuit_transition(to: &'static str) {
    counter!("hookwire_circuit_transitions_total", "to" => to).increment(1);
}

/// A parked task that came back from its tier later than [`TIER_OVERDUE_BOUND`] past
/// when it was due: the broker did not expire it on time (or the deliveries queue was
/// that far behind; `hookwire_queue_messages` tells which).
pub(crate) const TIER_OVERDUE_BOUND: Duration = Duration::from_secs(60);

/// How late a task came back from its tier: `None` if it was not parked or came on time.
pub(crate) fn tier_overdue(due_ms: Option<u64>, now_ms: u64) -> Option<Duration> {
    let late = Duration::from_millis(now_ms.saturating_sub(due_ms?));
    (late > TIER_OVERDUE_BOUND).then_some(late)
}

/// A task came back `late` past when its tier was due to expire it.
pub(crate) fn tier_overdue_seen(late: Duration) {
    counter!("hookwire_tier_overdue_total").increment(1);
    let late_ms = late.as_millis() as u64;
    let max_ms = MAX_OVERDUE_MS
        .fetch_max(late_ms, std::sync::atomic::Ordering::Relaxed)
        .max(late_ms);
    gauge!("hookwire_tier_overdue_max_seconds").set(max_ms as f64 / 1000.0);
}

/// A broker session opened on the node at `broker` (`host:port`): a failover shows as
/// sessions on another node.
pub(crate) fn broker_session(broker: String) {
    counter!("hookwire_broker_sessions_total", "broker" => broker).increment(1);
}

/// `hookwire_broker_connected`: 1 while a broker session consumes, 0 while `serve`
/// reconnects.
pub(crate) fn broker_connected(connected: bool) {
    gauge!("hookwire_broker_connected").set(if connected { 1.0 } else { 0.0 });
}

/// Exports the counters that alerts watch at 0 before anything happens: `increase()`
/// cannot see a series' first sample as an increase, so a series born at 1 would never
/// alert. Every label value is known beforehand, so this adds a bounded set.
pub(crate) fn register_alerted_counters() {
    for reason in DeadReason::ALL {
        counter!("hookwire_dead_letters_total", "reason" => reason.as_str()).increment(0);
    }
    counter!("hookwire_webhooks_disabled_total").increment(0);
    counter!("hookwire_tier_overdue_total").increment(0);
}

/// The largest lateness seen since start, for the gauge.
static MAX_OVERDUE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_only_past_the_bound_and_only_for_parked_tasks() {
        let due = 1_000_000;
        assert_eq!(tier_overdue(None, due + 10_000_000), None, "never parked");
        assert_eq!(
            tier_overdue(Some(due), due - 5),
            None,
            "back early (clock skew)"
        );
        assert_eq!(tier_overdue(Some(due), due + 60_000), None, "at the bound");
        assert_eq!(
            tier_overdue(Some(due), due + 60_001),
            Some(Duration::from_millis(60_001))
        );
    }
}
