//! The node's own metrics: its id, and its place in the changes stream.

use hookwire_store::ReplicationStatus;

/// `hookwire_node_info{node, version, commit}` = 1: joins this process's metrics to its
/// node id, and shows which build each node runs (a rolling upgrade's progress).
pub(crate) fn node(id: &str) {
    metrics::gauge!(
        "hookwire_node_info",
        "node" => id.to_owned(),
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => crate::COMMIT,
    )
    .set(1.0);
}

/// `hookwire_changes_applied_offset` (the last offset applied, -1 before the first),
/// `hookwire_changes_pending` (received, not applied) and `hookwire_changes_caught_up`.
pub(crate) fn replication(status: &ReplicationStatus) {
    metrics::gauge!("hookwire_changes_applied_offset")
        .set(status.applied_offset.map_or(-1.0, |n| n as f64));
    metrics::gauge!("hookwire_changes_pending").set(status.pending as f64);
    metrics::gauge!("hookwire_changes_caught_up").set(if status.caught_up { 1.0 } else { 0.0 });
}

/// `hookwire_attempts_applied_offset`: the offset of the last attempts-stream batch
/// applied (-1 before the first).
pub(crate) fn attempts_applied(offset: Option<u64>) {
    metrics::gauge!("hookwire_attempts_applied_offset").set(offset.map_or(-1.0, |n| n as f64));
}

/// `hookwire_stream_entries_refused_total{stream, reason}`: entries and batches of a
/// replication stream this node refused (`forged`, `malformed`, `unsealed`, `replayed`,
/// `invalid`) and skipped.
pub(crate) fn stream_refused(stream: &'static str, reason: &'static str) {
    metrics::counter!("hookwire_stream_entries_refused_total", "stream" => stream, "reason" => reason)
        .increment(1);
}

/// Exports every `hookwire_stream_entries_refused_total` series at 0 once the store is
/// replicated, so that the first refusal is an increase an alert sees.
pub(crate) fn register_stream_refusals() {
    for stream in ["changes", "attempts", "payloads"] {
        for reason in ["forged", "malformed", "unsealed", "replayed", "invalid"] {
            metrics::counter!("hookwire_stream_entries_refused_total", "stream" => stream, "reason" => reason)
                .increment(0);
        }
    }
}

/// `hookwire_stream_halted{stream}` = 1: this node stopped applying the stream at an
/// entry its build does not know.
pub(crate) fn stream_halted(stream: &'static str) {
    metrics::gauge!("hookwire_stream_halted", "stream" => stream).set(1.0);
}
