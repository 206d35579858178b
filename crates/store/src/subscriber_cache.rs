//! Decoded subscriber lists per (org, event type), so that the delivery hot path does not
//! parse a JSON record and open a sealed secret for every subscriber of every event.
//!
//! Every write to a subscription drops its organization's lists (writes are rare next to
//! events), except a health write: made as deliveries succeed and fail, it patches the
//! webhook's entry in place, so a large fan-out's list is not decoded again for each one.
//! A generation counter keeps a lookup that raced a write from caching what it read
//! before the write.
//!
//! A list holds its webhooks sorted by id (the index's key order), each behind its own
//! `Arc`: a delivery task finds its webhook by binary search, and a patch copies pointers,
//! not webhooks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hookwire_core::Subscription;
use uuid::Uuid;

use crate::keys::org_prefix;

/// At most this many subscriptions are held decoded; a full cache is cleared and refilled.
/// Bounded by count, as one cached subscription costs a few hundred bytes.
const MAX_CACHED_SUBSCRIPTIONS: usize = 16_384;

/// The enabled subscribers of one (org, event type), sorted by id.
pub type SubscriberList = Arc<[Arc<Subscription>]>;

#[derive(Debug, Default)]
pub(crate) struct SubscriberCache {
    generation: AtomicU64,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Keyed by the index prefix `org ‖ 0 ‖ event ‖ 0`.
    lists: HashMap<Vec<u8>, SubscriberList>,
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
    pub(crate) fn get(&self, prefix: &[u8]) -> Result<SubscriberList, u64> {
        let entries = self.entries();
        match entries.lists.get(prefix) {
            Some(list) => Ok(list.clone()),
            // Read under the lock, so a write that clears after this read bumps past it.
            None => Err(self.generation.load(Ordering::Acquire)),
        }
    }

    /// Caches a list read from the store, unless a write happened since `generation`.
    pub(crate) fn insert(&self, prefix: Vec<u8>, list: SubscriberList, generation: u64) {
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

    /// Forgets `org`'s lists: called after every write to one of its subscriptions that
    /// [`SubscriberCache::patch`] does not cover.
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

    /// Applies `patch` to webhook `id` of `org` in every cached list that holds it: called
    /// after a write that changed only what `patch` changes.
    pub(crate) fn patch(&self, org: &str, id: &Uuid, patch: impl Fn(&mut Subscription)) {
        let mut entries = self.entries();
        // A lookup that read the record before this write must not cache what it read.
        self.generation.fetch_add(1, Ordering::AcqRel);
        let org_prefix = org_prefix(org);
        for (prefix, list) in entries.lists.iter_mut() {
            if !prefix.starts_with(&org_prefix) {
                continue;
            }
            let Some(at) = position(list, id) else {
                continue;
            };
            let mut patched = (*list[at]).clone();
            patch(&mut patched);
            let mut copy = list.to_vec();
            copy[at] = Arc::new(patched);
            *list = copy.into();
        }
    }
}

/// Where webhook `id` is in `list`.
pub(crate) fn position(list: &[Arc<Subscription>], id: &Uuid) -> Option<usize> {
    list.binary_search_by(|s| s.id.cmp(id)).ok()
}
