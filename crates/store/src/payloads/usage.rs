//! What the archive holds per organization (its events and their bodies' bytes), kept in
//! the archive's own tree and written in the same sled batch as every change to what it
//! counts: opening the store reads these counts, never the archive
//! (docs/performance.md). `0xff usage 0 ‖ org` → `events (u64) ‖ bytes (u64)`; an
//! organization with nothing kept has no entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Payloads, decode_block, decode_record, split_time_key};
use crate::{Error, Result};

/// Sorts after every organization's keys (an organization is ASCII), and apart from the
/// payloads stream's applied offset (`0xff applied_offset`).
const PREFIX: &[u8] = b"\xffusage\x00";

/// What the archive keeps of one organization.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeptPayloads {
    /// Its kept events.
    pub events: u64,
    /// Their bodies' bytes.
    pub bytes: u64,
}

impl KeptPayloads {
    fn encode(self) -> [u8; 16] {
        let mut v = [0; 16];
        v[..8].copy_from_slice(&self.events.to_be_bytes());
        v[8..].copy_from_slice(&self.bytes.to_be_bytes());
        v
    }

    fn decode(raw: &[u8]) -> Result<Self> {
        let half = |r: std::ops::Range<usize>| {
            raw.get(r)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        match (raw.len(), half(0..8), half(8..16)) {
            (16, Some(events), Some(bytes)) => Ok(Self { events, bytes }),
            _ => Err(Error::Corrupt("payload archive usage".into())),
        }
    }
}

fn key(org: &str) -> Vec<u8> {
    let mut key = PREFIX.to_vec();
    key.extend_from_slice(org.as_bytes());
    key
}

/// The counts, in memory as in the tree. Every write to the archive holds its lock from
/// what it reads to decide the write until the write is applied: two prunes that removed
/// the same block would each take it off the counts.
#[derive(Debug, Default, Clone)]
pub(crate) struct Usage(Arc<Mutex<Counts>>);

#[derive(Debug, Default)]
pub(crate) struct Counts {
    total_bytes: u64,
    per_org: HashMap<String, KeptPayloads>,
}

/// What one write adds to and takes off each organization's counts.
#[derive(Debug, Default)]
pub(crate) struct Tally(BTreeMap<String, (KeptPayloads, KeptPayloads)>);

impl Tally {
    pub(super) fn add(&mut self, org: &str, bytes: u64) {
        let (added, _) = self.0.entry(org.to_owned()).or_default();
        added.events += 1;
        added.bytes += bytes;
    }

    pub(super) fn remove(&mut self, org: &str, bytes: u64) {
        let (_, removed) = self.0.entry(org.to_owned()).or_default();
        removed.events += 1;
        removed.bytes += bytes;
    }
}

impl Usage {
    pub(super) fn lock(&self) -> MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counts kept in `tree`.
    pub(super) fn load(tree: &sled::Tree) -> Result<Self> {
        let mut counts = Counts::default();
        for entry in tree.scan_prefix(PREFIX) {
            let (k, raw) = entry?;
            let org = String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned();
            counts.set(org, KeptPayloads::decode(&raw)?);
        }
        Ok(Self(Arc::new(Mutex::new(counts))))
    }

    pub(super) fn total(&self) -> u64 {
        self.lock().total_bytes
    }

    pub(super) fn orgs_over(&self, max_per_org: u64) -> Vec<String> {
        self.lock()
            .per_org
            .iter()
            .filter(|(_, kept)| kept.bytes > max_per_org)
            .map(|(org, _)| org.clone())
            .collect()
    }

    pub(super) fn per_org(&self) -> BTreeMap<String, KeptPayloads> {
        self.lock()
            .per_org
            .iter()
            .map(|(org, kept)| (org.clone(), *kept))
            .collect()
    }
}

impl Counts {
    fn set(&mut self, org: String, kept: KeptPayloads) {
        let old = match kept.events {
            0 => self.per_org.remove(&org),
            _ => self.per_org.insert(org, kept),
        };
        self.total_bytes = self.total_bytes + kept.bytes - old.map_or(0, |o| o.bytes);
    }

    /// Applies `batch` to `tree` with the counts `tally` changes written in it, then
    /// takes them here: both or neither.
    pub(super) fn commit(
        &mut self,
        tree: &sled::Tree,
        mut batch: sled::Batch,
        tally: Tally,
    ) -> Result<()> {
        let mut next = Vec::with_capacity(tally.0.len());
        for (org, (added, removed)) in tally.0 {
            let now = self.per_org.get(&org).copied().unwrap_or_default();
            let kept = KeptPayloads {
                events: (now.events + added.events).saturating_sub(removed.events),
                bytes: (now.bytes + added.bytes).saturating_sub(removed.bytes),
            };
            match kept.events {
                0 => batch.remove(key(&org)),
                _ => batch.insert(key(&org), &kept.encode()),
            }
            next.push((org, kept));
        }
        tree.apply_batch(batch)?;
        for (org, kept) in next {
            self.set(org, kept);
        }
        Ok(())
    }
}

impl Payloads {
    /// Counts what the archive holds by reading all of it: what the kept counts must equal.
    pub(crate) fn walk_usage(&self) -> Result<BTreeMap<String, KeptPayloads>> {
        let mut per_org = BTreeMap::<String, KeptPayloads>::new();
        for entry in self.tree.iter() {
            let (key, raw) = entry?;
            let Some((org, stamp)) = split_time_key(&key) else {
                continue;
            };
            let kept = per_org
                .entry(String::from_utf8_lossy(org).into_owned())
                .or_default();
            for m in decode_block(&raw, stamp)? {
                kept.events += 1;
                kept.bytes += decode_record(m.record, false)?.body_bytes as u64;
            }
        }
        per_org.retain(|_, kept| kept.events > 0);
        Ok(per_org)
    }

    /// Writes the counts of a full read of the archive in place of those kept: once, for
    /// a store written before they were kept. Returns them.
    pub(crate) fn rebuild_usage(&self) -> Result<BTreeMap<String, KeptPayloads>> {
        let mut counts = self.usage.lock();
        let walked = self.walk_usage()?;
        let mut batch = sled::Batch::default();
        for entry in self.tree.scan_prefix(PREFIX) {
            batch.remove(entry?.0);
        }
        for (org, kept) in &walked {
            batch.insert(key(org), &kept.encode());
        }
        self.tree.apply_batch(batch)?;
        *counts = Counts::default();
        for (org, kept) in &walked {
            counts.set(org.clone(), *kept);
        }
        Ok(walked)
    }

    /// The counts as kept: what start-up read, and every write since.
    pub(crate) fn usage(&self) -> BTreeMap<String, KeptPayloads> {
        self.usage.per_org()
    }
}
