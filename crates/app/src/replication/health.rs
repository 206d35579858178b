//! Sharing this node's webhooks' health transitions through the changes stream.

use std::time::Duration;

use hookwire_store::{Change, Store, Writer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The most webhooks whose health one entry shares: an entry stays small (about 100
/// bytes each), and a burst of flips takes several entries, not one huge one.
const HEALTH_BATCH: usize = 1000;

/// How long the last sharing at shutdown may take.
const LAST_SHARE: Duration = Duration::from_secs(5);

/// Shares the health transitions this node notes ([`Store::take_health_transitions`])
/// through the changes stream every `every`, and once more at `stop`. Transitions that
/// could not be shared are noted again for the next time.
pub(crate) async fn share_health(
    store: Store,
    writer: Writer,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => share_noted(&store, &writer).await,
            () = stop.cancelled() => {
                let _ = tokio::time::timeout(LAST_SHARE, share_noted(&store, &writer)).await;
                return;
            }
        }
    }
}

/// Shares everything noted, an entry per [`HEALTH_BATCH`] webhooks.
async fn share_noted(store: &Store, writer: &Writer) {
    loop {
        let taking = store.clone();
        let taken =
            match tokio::task::spawn_blocking(move || taking.take_health_transitions(HEALTH_BATCH))
                .await
            {
                Ok(Ok(taken)) => taken,
                Ok(Err(e)) => {
                    return warn!(error = %e, "Cannot read the webhooks' health to share it.");
                }
                Err(e) => return warn!(error = %e, "Reading the webhooks' health panicked."),
            };
        if taken.is_empty() {
            return;
        }
        let count = taken.len();
        if let Err(e) = writer.commit(Change::ShareHealth(taken.clone())).await {
            store.note_health_transitions(&taken);
            return warn!(error = %e, "Cannot share health transitions; trying again later.");
        }
        debug!(webhooks = count, "Health transitions shared.");
        if count < HEALTH_BATCH {
            return;
        }
    }
}
