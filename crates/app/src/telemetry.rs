//! The node's own metrics: its id, and its place in the changes stream.

use hookwire_store::ReplicationStatus;

/// `hookwire_node_info{node}` = 1: joins this process's metrics to its node id.
pub(crate) fn node(id: &str) {
    metrics::gauge!("hookwire_node_info", "node" => id.to_owned()).set(1.0);
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
