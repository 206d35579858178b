//! The archive's byte budgets: the bodies kept for resending, in all and per organization,
//! never exceed `store.payload_max_bytes` and `store.payload_max_bytes_per_org` for longer
//! than one prune period. Producers choose what is archived, so the archive's disk is
//! bounded by configuration, not by what they send; the oldest bodies go first.

use super::{Payloads, decode_block, decode_record, split_time_key, stamp_of, time_key};
use crate::Result;

const MINUTE_MS: u64 = 60_000;

/// How long, and how much, the archive keeps: `store.payload_retention`,
/// `store.payload_max_bytes` and `store.payload_max_bytes_per_org`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLimits {
    /// Bodies received longer ago go.
    pub retention: std::time::Duration,
    /// The most bytes of bodies kept in all.
    pub max_bytes: u64,
    /// The most bytes of one organization's bodies.
    pub max_bytes_per_org: u64,
}

impl PayloadLimits {
    /// The prune that enforces these limits at `now_ms`.
    pub fn prune(&self, now_ms: u64) -> crate::Change {
        let retention_ms = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        crate::Change::PrunePayloads {
            older_than_ms: now_ms.saturating_sub(retention_ms),
            max_bytes: self.max_bytes,
            max_bytes_per_org: self.max_bytes_per_org,
        }
    }
}

/// How many bodies each budget evicted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted {
    /// Over `store.payload_max_bytes_per_org`.
    pub(crate) per_org: usize,
    /// Over `store.payload_max_bytes`.
    pub(crate) total: usize,
}

impl Payloads {
    /// The bytes of the bodies kept now, as counted in step with every change.
    pub(crate) fn kept_bytes(&self) -> u64 {
        self.usage.total()
    }

    /// How many payloads are kept, and their bodies' bytes, read from the whole archive.
    pub(crate) fn stats(&self) -> Result<(usize, u64)> {
        let walked = self.walk_usage()?;
        let events = walked.values().map(|k| k.events as usize).sum();
        Ok((events, walked.values().map(|k| k.bytes).sum()))
    }

    /// Evicts the oldest bodies of every organization over `max_per_org`, then the oldest
    /// of all while the archive is over `max_total`.
    pub(crate) fn enforce_budgets(&self, max_total: u64, max_per_org: u64) -> Result<Evicted> {
        let mut evicted = Evicted::default();
        for org in self.usage.orgs_over(max_per_org) {
            let cutoff = self.cutoff(Some(&org), max_per_org)?;
            evicted.per_org += self.prune_org(&org, cutoff)?;
        }
        if self.usage.total() > max_total {
            let cutoff = self.cutoff(None, max_total)?;
            evicted.total += self.prune(cutoff)?;
        }
        Ok(evicted)
    }

    /// The receipt time before which bodies must go for what remains of `org` (or of every
    /// organization) to fit in `budget`: newest first, the first body that does not fit
    /// and everything older go. Two passes keep its memory bounded whatever the archive
    /// holds: bytes per minute first (at most one entry per minute of retention), then the
    /// bodies of the one minute where the budget runs out.
    fn cutoff(&self, org: Option<&str>, budget: u64) -> Result<u64> {
        let mut per_minute = std::collections::BTreeMap::<u64, u64>::new();
        self.each_size(org, |at_ms, bytes| {
            *per_minute.entry(at_ms / MINUTE_MS).or_default() += bytes;
        })?;
        let mut newer = 0u64;
        let mut boundary = None;
        for (minute, bytes) in per_minute.iter().rev() {
            if newer + bytes > budget {
                boundary = Some(*minute);
                break;
            }
            newer += bytes;
        }
        let Some(minute) = boundary else {
            return Ok(0);
        };
        let mut sizes = Vec::new();
        self.each_size(org, |at_ms, bytes| {
            if at_ms / MINUTE_MS == minute {
                sizes.push((at_ms, bytes));
            }
        })?;
        sizes.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
        for (at_ms, bytes) in sizes {
            newer += bytes;
            if newer > budget {
                return Ok(at_ms + 1);
            }
        }
        Ok(minute * MINUTE_MS)
    }

    /// Calls `f` with the receipt time and size of every body of `org` (or of all).
    fn each_size(&self, org: Option<&str>, mut f: impl FnMut(u64, u64)) -> Result<()> {
        let mut scan = |org: &str, key: &[u8], raw: &[u8]| -> Result<()> {
            for m in decode_block(raw, stamp_of(key, org)?)? {
                f(
                    m.received_at_ms,
                    decode_record(m.record, false)?.body_bytes as u64,
                );
            }
            Ok(())
        };
        match org {
            Some(org) => {
                for entry in self.tree.scan_prefix(time_key(org, &[])) {
                    let (key, raw) = entry?;
                    scan(org, &key, &raw)?;
                }
            }
            None => {
                for entry in self.tree.iter() {
                    let (key, raw) = entry?;
                    let Some((org, _)) = split_time_key(&key) else {
                        continue;
                    };
                    scan(&String::from_utf8_lossy(org), &key, &raw)?;
                }
            }
        }
        Ok(())
    }
}
