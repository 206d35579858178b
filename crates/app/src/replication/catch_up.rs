//! Catching up: a node holds every change made before it started before it consumes.

use std::time::Duration;

use hookwire_store::Writer;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Writes this node's mark and waits until it is applied, retrying until `stop`: the
/// node then holds every change made before it started. `false` if stopped first.
pub(crate) async fn catch_up(writer: &Writer, stop: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(200);
    loop {
        let done = tokio::select! {
            done = writer.catch_up() => done,
            () = stop.cancelled() => return false,
        };
        match done {
            Ok(()) => {
                if let Some(status) = writer.replication() {
                    crate::telemetry::replication(&status);
                    info!(applied_offset = ?status.applied_offset, "Caught up with the changes stream.");
                }
                return true;
            }
            Err(e) => warn!(error = %e, "Not caught up with the changes stream yet; trying again."),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return false,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
