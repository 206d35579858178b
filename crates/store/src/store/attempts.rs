//! The store's writes to the attempt log: a stream's batch applied, and the prunes.

use super::*;

impl Store {
    /// Applies the attempts stream's batch at `offset` to the attempt log, then moves
    /// [`Store::attempts_replicated_through`] past its newest attempt.
    pub(super) fn apply_attempts(&self, records: &[AttemptRecord], offset: u64) -> Result<()> {
        attempt_log::apply(&self.attempts, records, offset)?;
        let ended = records
            .iter()
            .map(|r| r.at_ms.saturating_add(r.latency_ms))
            .max();
        if let Some(ended) = ended {
            self.replicated_attempts.send_if_modified(|through| {
                let later = ended > *through;
                if later {
                    *through = ended;
                }
                later
            });
        }
        Ok(())
    }

    /// Prunes the attempt log by age, and to `keep_per_webhook` attempts per webhook.
    pub(super) fn prune_attempts(&self, older_than_ms: u64, keep_per_webhook: usize) -> Result<()> {
        let _one = self
            .attempts_pruning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        attempt_log::prune(&self.attempts, older_than_ms, keep_per_webhook)
    }
}
