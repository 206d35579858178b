//! Decoded subscriber lists per (org, event type), so that the delivery hot path does not
//! parse a JSON record and open a sealed secret for every subscriber of every event.
//!
//! Every write to a subscription drops its organization's lists (writes are rare next to
//! events). A generation counter keeps a lookup that raced a write from caching what it
//! read before the write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hookwire_core::Subscription;

use crate::keys::org_prefix;

/// At most this many subscriptions are held decoded; a full cache is cleared and refilled.
/// Bounded by count, as one cached subscription costs a few hundred bytes.
const MAX_CACHED_SUBSCRIPTIONS: usize = 16_384;

#[derive(Debug, Default)]
pub(crate) struct SubscriberCache {
    generation: AtomicU64,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Keyed by the index prefix `org ‖ 0 ‖ event ‖ 0`.
    lists: HashMap<Vec<u8>, Arc<[Subscription]>>,
    subscriptions: usize,
}

impl SubscriberCache {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached list, or the generation to pass to [`SubscriberCache::insert`].
    pub(crate) fn get(&self, prefix: &[u8]) -> Result<Arc<[Subscription]>, u64> {
        let entries = self.entries();
        match entries.lists.get(prefix) {
            Some(list) => Ok(list.clone()),
            // Read under the lock, so a write that clears after this read bumps past it.
            None => Err(self.generation.load(Ordering::Acquire)),
        }
    }

    /// Caches a list read from the store, unless a write happened since `generation`.
    pub(crate) fn insert(&self, prefix: Vec<u8>, list: Arc<[Subscription]>, generation: u64) {
        let mut entries = self.entries();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.subscriptions + list.len() > MAX_CACHED_SUBSCRIPTIONS {
            entries.lists.clear();
            entries.subscriptions = 0;
        }
        entries.subscriptions += list.len();
        if let Some(old) = entries.lists.insert(prefix, list) {
            entries.subscriptions -= old.len();
        }
    }

    /// Forgets `org`'s lists: called after every write to one of its subscriptions.
    pub(crate) fn invalidate(&self, org: &str) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut dropped = 0;
        let org_prefix = org_prefix(org);
        entries.lists.retain(|prefix, list| {
            let keep = !prefix.starts_with(&org_prefix);
            if !keep {
                dropped += list.len();
            }
            keep
        });
        entries.subscriptions -= dropped;
    }
}
