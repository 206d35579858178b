//! Every metric the engine records, named in one place (Prometheus conventions:
//! `hookwire_…_total` counters, `_seconds` histograms). Without an installed recorder
//! (tests, tools) these calls cost next to nothing.

use std::time::Duration;

use hookwire_core::DeadReason;
use metrics::{counter, gauge, histogram};

/// An event came off the events queue: `result` is `accepted` or its dead-letter reason.
/// Only catalog types are labels, so a producer cannot blow up the label set.
pub(crate) fn event_consumed(event_type: Option<&str>, result: &'static str) {
    counter!("hookwire_events_consumed_total", "event_type" => event_type.unwrap_or("invalid").to_owned(), "result" => result)
        .increment(1);
}

/// An HTTP attempt finished.
pub(crate) fn attempt_finished(outcome: &'static str, latency: Duration) {
    histogram!("hookwire_attempt_duration_seconds", "outcome" => outcome)
        .record(latency.as_secs_f64());
}

/// What became of a delivery after an attempt, or instead of one.
pub(crate) fn delivery(outcome: &'static str) {
    counter!("hookwire_deliveries_total", "outcome" => outcome).increment(1);
}

/// From the producer's publish to the receiver's 2xx.
pub(crate) fn end_to_end_lag(lag: Duration) {
    histogram!("hookwire_delivery_lag_seconds").record(lag.as_secs_f64());
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
    gauge!("hookwire_deliveries_in_flight").increment(delta);
}

/// A queue's ready messages, as the last poll saw them.
pub(crate) fn queue_depth(queue: &str, messages: u32) {
    gauge!("hookwire_queue_messages", "queue" => queue.to_owned()).set(f64::from(messages));
}
