//! Health shared between nodes without a write per delivery: a node records every
//! attempt's result in its own store, and only notes the webhooks whose failing state
//! flipped (failing since T, or recovered). At an interval the node shares what those
//! webhooks' health is then, in one entry of the changes stream; every node applies it.
//! So the stream grows with transitions, at most one entry per node per interval, and a
//! receiver that flaps costs no more than one that fails once.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// A webhook's health as a node shares it: every node takes these two fields as they are.
/// The count of consecutive failures stays each node's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthTransition {
    /// The webhook's organization.
    pub org: String,
    /// The webhook.
    pub id: Uuid,
    /// Failing since then (ms); `None`: not failing.
    pub failing_since_ms: Option<u64>,
    /// The last success the sharing node knows of (ms); the later one wins on apply.
    pub last_success_ms: Option<u64>,
}

/// The webhooks whose failing state flipped on this node since it last shared them.
#[derive(Debug, Default)]
pub(super) struct FlippedHealth {
    /// Only a replicated node notes flips; a single node would never take them.
    tracking: AtomicBool,
    flipped: Mutex<HashSet<(String, Uuid)>>,
}

impl FlippedHealth {
    /// Notes that `org`'s webhook `id` started or stopped failing on this node.
    pub(super) fn note(&self, org: &str, id: Uuid) {
        if self.tracking.load(Ordering::Relaxed) {
            self.set().insert((org.to_owned(), id));
        }
    }

    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<(String, Uuid)>> {
        self.flipped.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    /// From now on, note the webhooks whose failing state flips on this node, for
    /// [`Store::take_health_transitions`]. For a replicated node.
    pub fn track_health_transitions(&self) {
        self.flipped.tracking.store(true, Ordering::Relaxed);
    }

    /// The current health of every webhook whose failing state flipped since the last
    /// call, at most `max` of them (the rest stay noted). A webhook deleted meanwhile is
    /// left out.
    pub fn take_health_transitions(&self, max: usize) -> Result<Vec<HealthTransition>> {
        let noted: Vec<(String, Uuid)> = {
            let mut set = self.flipped.set();
            let taken: Vec<_> = set.iter().take(max).cloned().collect();
            for key in &taken {
                set.remove(key);
            }
            taken
        };
        let mut out = Vec::with_capacity(noted.len());
        for (org, id) in noted {
            if let Some(raw) = self.subscriptions.get(org_key(&org, &id))? {
                let header: Header =
                    serde_json::from_slice(&raw).map_err(|e| Error::Corrupt(e.to_string()))?;
                out.push(HealthTransition {
                    org,
                    id,
                    failing_since_ms: header.failing_since_ms,
                    last_success_ms: header.last_success_ms,
                });
            }
        }
        Ok(out)
    }

    /// Notes `transitions` again, after they could not be shared.
    pub fn note_health_transitions(&self, transitions: &[HealthTransition]) {
        let mut set = self.flipped.set();
        for t in transitions {
            set.insert((t.org.clone(), t.id));
        }
    }

    /// Takes the shared health of each webhook still stored (with `mark`'s offset when it
    /// comes from the changes stream). Its version does not change: health is not a
    /// setting, and must not make an API write conflict.
    pub(super) fn share_health(
        &self,
        transitions: &[HealthTransition],
        mark: Option<Mark<'_>>,
    ) -> Result<()> {
        self.transact(mark, |subs, _| {
            for t in transitions {
                let key = org_key(&t.org, &t.id);
                let Some(raw) = subs.get(&key)? else {
                    continue;
                };
                let abort = |e: Error| ConflictableTransactionError::Abort(e);
                let mut record: Record = decode(&raw).map_err(abort)?;
                record.failing_since_ms = t.failing_since_ms;
                record.last_success_ms = record.last_success_ms.max(t.last_success_ms);
                subs.insert(key.as_slice(), encode(&record).map_err(abort)?)?;
            }
            Ok(())
        })?;
        let orgs: HashSet<&str> = transitions.iter().map(|t| t.org.as_str()).collect();
        for org in orgs {
            self.subscribers.invalidate(org);
        }
        Ok(())
    }

    /// Records one attempt's effect on the webhook's health; its health afterwards, or
    /// `None` when the webhook is gone.
    pub(super) fn record_health(
        &self,
        org: &str,
        id: &Uuid,
        delivered: bool,
        at_ms: u64,
    ) -> Result<Option<Health>> {
        let key = org_key(org, id);
        // Compare-and-swap on the record: a concurrent API write wins and is retried on.
        loop {
            let Some(old) = self.subscriptions.get(&key)? else {
                return Ok(None);
            };
            let mut record: Record = decode(&old)?;
            let was_failing = record.failing_since_ms.is_some();
            if delivered {
                record.consecutive_failures = 0;
                record.failing_since_ms = None;
                record.last_success_ms = Some(at_ms);
            } else {
                record.consecutive_failures = record.consecutive_failures.saturating_add(1);
                record.failing_since_ms = record.failing_since_ms.or(Some(at_ms));
            }
            let new = encode(&record)?;
            if self
                .subscriptions
                .compare_and_swap(&key, Some(&old), Some(new))?
                .is_ok()
            {
                if was_failing != record.failing_since_ms.is_some() {
                    self.flipped.note(org, *id);
                }
                return Ok(Some(Health {
                    consecutive_failures: record.consecutive_failures,
                    failing_since_ms: record.failing_since_ms,
                    last_success_ms: record.last_success_ms,
                }));
            }
        }
    }
}

/// A webhook's health fields, as a health write left them.
pub(super) struct Health {
    consecutive_failures: u32,
    failing_since_ms: Option<u64>,
    last_success_ms: Option<u64>,
}

impl Health {
    pub(super) fn apply_to(&self, sub: &mut Subscription) {
        sub.consecutive_failures = self.consecutive_failures;
        sub.failing_since_ms = self.failing_since_ms;
        sub.last_success_ms = self.last_success_ms;
    }
}
