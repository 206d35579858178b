//! The payload archive: each event's body, kept once per (org, event id) however many
//! webhooks it fans out to, for resending. One tree, `payload_archive`, whose keys all
//! start with the organization (`org ‖ 0 ‖ kind ‖ …`):
//!
//! - `org ‖ 0 ‖ t ‖ time ‖ seq` → a block: up to [`BLOCK_EVENTS`] of the organization's
//!   events from one batch, in the order hookwire received them, received within
//!   [`BLOCK_SPAN_MS`] of `time` (the block's first), each with its record (id, type,
//!   times, size) and its body inline when at most [`PIECE`] bytes. "Resend everything
//!   between T1 and T2" and pruning by age are range scans of this prefix. A store written
//!   before blocks holds one event per key here, which is read as a block of one;
//! - `org ‖ 0 ‖ e ‖ event id` → `time ‖ seq` of its block: the index by id, which also
//!   refuses a second copy of an event;
//! - `org ‖ 0 ‖ p ‖ seq ‖ piece` → at most [`PIECE`] bytes of a larger body (`seq` the
//!   event's own), in pieces for the reason the dead-letter archive keeps its bodies in
//!   pieces (sled's cache bound);
//! - `0xff applied_offset` → the offset of the last batch applied from the payloads
//!   stream, written in the same sled batch as that batch's events;
//! - `0xff usage 0 ‖ org` → how many events of the organization are kept, and their
//!   bodies' bytes ([`usage`]), written in the same sled batch as every change to them.
//!
//! A sled insert costs far more than the bytes it writes (docs/performance.md), so an
//! event with a small body costs one insert (its index entry) and a share of its block's,
//! and a batch of events is one sled batch: applied atomically, so a crash never leaves a
//! block without its index entries, or counts that differ from what is kept.

use serde::{Deserialize, Serialize};

use crate::keys::{SEP, org_prefix};

mod budget;
mod encoding;
mod migrate;
mod usage;

use crate::records::{Page, decode, encode};
use crate::{Error, Result};
pub use budget::PayloadLimits;
use encoding::{decode_block, decode_record, encode_block, encode_record};
pub use usage::KeptPayloads;

/// The tree of the archive.
const TREE: &str = "payload_archive";
/// Where the offset of the last batch applied from the payloads stream is kept: no
/// organization starts with 0xff (an organization is ASCII).
const APPLIED_KEY: &[u8] = b"\xffapplied_offset";
/// The largest body kept inline in its record, and the largest piece of a larger one.
const PIECE: usize = 4096;
/// Removals go to sled in slices, as the attempt log's do.
const SLICE: usize = 1000;
/// Events of one sled batch get sequence numbers `id << SEQ_BITS | i`, from one
/// `generate_id` per batch.
const SEQ_BITS: u32 = 20;

const TIME: u8 = b't';
const ID: u8 = b'e';
const BODY: u8 = b'p';
/// The first byte of a record's value: its encoding.
const RECORD_V1: u8 = 1;
/// The first byte of a block's value.
const BLOCK_V1: u8 = 2;
/// The most events in one block, and the most bytes of their records: a block is read
/// whole to find one event, and stays far below sled's cache.
const BLOCK_EVENTS: usize = 64;
const BLOCK_BYTES: usize = 64 * 1024;
/// Every event of a block was received at most this long after the block's first, the
/// time in its key: a range from T1 starts its scan this much earlier.
const BLOCK_SPAN_MS: u64 = 1000;

/// One event's body as the archive keeps it, and as the payloads stream carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Its organization.
    pub org: String,
    /// The event's id (the producer's `message_id`).
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// When hookwire received it (ms).
    pub received_at_ms: u64,
    /// When the producer published it (ms), when it said.
    pub published_at_ms: Option<u64>,
    /// The producer's bytes; empty in listings.
    #[serde(with = "crate::records::base64_bytes")]
    pub body: Vec<u8>,
    /// The body's size.
    pub body_bytes: usize,
}

impl Payload {
    /// A batch as one message of the payloads stream.
    pub fn encode_batch(batch: &[Payload]) -> Result<Vec<u8>> {
        encode(&batch)
    }

    /// A batch read from the payloads stream.
    pub fn decode_batch(raw: &[u8]) -> Result<Vec<Payload>> {
        decode(raw)
    }
}

/// The archive's tree.
#[derive(Debug, Clone)]
pub(crate) struct Payloads {
    tree: sled::Tree,
    /// What the archive holds, for its byte budgets; the lock of every write.
    usage: usage::Usage,
}

fn kind_prefix(org: &str, kind: u8) -> Vec<u8> {
    let mut key = org_prefix(org);
    key.push(kind);
    key
}

fn id_key(org: &str, event_id: &str) -> Vec<u8> {
    let mut key = kind_prefix(org, ID);
    key.extend_from_slice(event_id.as_bytes());
    key
}

/// `org ‖ 0 ‖ t ‖ time ‖ seq`; `stamp` is `time ‖ seq`.
fn time_key(org: &str, stamp: &[u8]) -> Vec<u8> {
    let mut key = kind_prefix(org, TIME);
    key.extend_from_slice(stamp);
    key
}

/// The organization and stamp of a time-block key; `None` for any other key of the tree.
fn split_time_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let sep = key.iter().position(|b| *b == SEP)?;
    (key.first() != Some(&0xff) && key.get(sep + 1) == Some(&TIME))
        .then(|| (&key[..sep], &key[sep + 2..]))
}

fn stamp(at_ms: u64, seq: u64) -> [u8; 16] {
    let mut stamp = [0; 16];
    stamp[..8].copy_from_slice(&at_ms.to_be_bytes());
    stamp[8..].copy_from_slice(&seq.to_be_bytes());
    stamp
}

fn piece_key(org: &str, seq: &[u8], piece: u32) -> Vec<u8> {
    let mut key = kind_prefix(org, BODY);
    key.extend_from_slice(seq);
    key.extend_from_slice(&piece.to_be_bytes());
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Payloads gathered into blocks: each organization's in receipt order, a new block
/// whenever one is full, the organization changes, or the next event was received over
/// [`BLOCK_SPAN_MS`] after the block's first.
fn blocks(mut payloads: Vec<&Payload>) -> Vec<Vec<&Payload>> {
    payloads.sort_by(|a, b| (&a.org, a.received_at_ms).cmp(&(&b.org, b.received_at_ms)));
    let mut blocks: Vec<Vec<&Payload>> = Vec::new();
    let mut bytes = 0;
    for p in payloads {
        let size = 64 + p.event_id.len() + p.event_type.len() + p.body.len().min(PIECE);
        match blocks.last_mut() {
            Some(block)
                if block.len() < BLOCK_EVENTS
                    && block[0].org == p.org
                    && bytes + size <= BLOCK_BYTES
                    && p.received_at_ms - block[0].received_at_ms <= BLOCK_SPAN_MS =>
            {
                bytes += size;
                block.push(p);
            }
            _ => {
                bytes = size;
                blocks.push(vec![p]);
            }
        }
    }
    blocks
}

/// `time ‖ seq` of a time key of `org`.
fn stamp_of<'k>(key: &'k [u8], org: &str) -> Result<&'k [u8]> {
    key.get(org.len() + 2..)
        .filter(|s| s.len() == 16)
        .ok_or_else(|| Error::Corrupt("payload time key".into()))
}

impl Payloads {
    pub(crate) fn open(db: &sled::Db) -> Result<Self> {
        let tree = db.open_tree(TREE)?;
        let this = Self {
            usage: usage::Usage::load(&tree)?,
            tree,
        };
        if db.tree_names().iter().any(|n| n.as_ref() == b"payloads") {
            this.migrate(db)?;
        }
        Ok(this)
    }

    /// Keeps each payload unless its (org, event id) is kept already: a redelivered event,
    /// or one that several batches carry, is stored once. With `offset`, records it as
    /// the last batch applied from the payloads stream, in the same sled batch.
    pub(crate) fn insert(
        &self,
        db: &sled::Db,
        payloads: &[Payload],
        offset: Option<u64>,
    ) -> Result<()> {
        let mut counts = self.usage.lock();
        let mut seen = std::collections::HashSet::new();
        let mut new = Vec::new();
        let mut tally = usage::Tally::default();
        for p in payloads {
            let id = id_key(&p.org, &p.event_id);
            if seen.contains(&id) || self.tree.contains_key(&id)? {
                continue;
            }
            seen.insert(id);
            tally.add(&p.org, p.body.len() as u64);
            new.push(p);
        }
        let (mut base, mut n) = (None, 0u64);
        let mut next_seq = || -> Result<u64> {
            let base = match base {
                Some(b) if n < 1 << SEQ_BITS => b,
                _ => {
                    n = 0;
                    *base.insert(db.generate_id()? << SEQ_BITS)
                }
            };
            n += 1;
            Ok(base | (n - 1))
        };
        let mut batch = sled::Batch::default();
        for block in blocks(new) {
            let org = block[0].org.as_str();
            let mut members = Vec::with_capacity(block.len());
            for p in &block {
                let seq = next_seq()?;
                let inline = p.body.len() <= PIECE;
                if !inline {
                    for (i, piece) in p.body.chunks(PIECE).enumerate() {
                        batch.insert(piece_key(org, &seq.to_be_bytes(), i as u32), piece);
                    }
                }
                members.push((p.received_at_ms, seq, encode_record(p, inline)));
            }
            let stamp = stamp(members[0].0, members[0].1);
            for p in &block {
                batch.insert(id_key(org, &p.event_id), &stamp);
            }
            batch.insert(time_key(org, &stamp), encode_block(&members));
        }
        if let Some(offset) = offset {
            batch.insert(APPLIED_KEY, &offset.to_be_bytes());
        }
        counts.commit(&self.tree, batch, tally)
    }

    /// Removes every payload received before `older_than_ms`; returns how many. Walks
    /// each organization's oldest blocks, reading only what it removes and the blocks
    /// that straddle the cutoff.
    pub(crate) fn prune(&self, older_than_ms: u64) -> Result<usize> {
        let mut removed = 0;
        let mut from: Vec<u8> = Vec::new();
        // One organization at a time: the first key at or after `from` names the next.
        while let Some(entry) = self.tree.range(from.as_slice()..).next() {
            let (key, _) = entry?;
            let Some(sep) = key.iter().position(|b| *b == SEP) else {
                break;
            };
            if key.first() == Some(&0xff) {
                break;
            }
            let org = String::from_utf8_lossy(&key[..sep]).into_owned();
            removed += self.prune_org(&org, older_than_ms)?;
            from = key[..sep].to_vec();
            from.push(SEP + 1);
        }
        Ok(removed)
    }

    fn prune_org(&self, org: &str, older_than_ms: u64) -> Result<usize> {
        let end = time_key(org, &older_than_ms.to_be_bytes());
        let mut from = time_key(org, &[]);
        let mut removed = 0;
        loop {
            let mut counts = self.usage.lock();
            let old: Vec<(sled::IVec, sled::IVec)> = self
                .tree
                .range(from.as_slice()..end.as_slice())
                .take(SLICE)
                .collect::<std::result::Result<_, _>>()?;
            let Some((last, _)) = old.last() else {
                return Ok(removed);
            };
            // A block that straddles the cutoff is kept in part: the next slice starts
            // past it.
            from = last.to_vec();
            from.push(0);
            let mut batch = sled::Batch::default();
            let mut tally = usage::Tally::default();
            for (key, raw) in &old {
                let stamp = stamp_of(key, org)?;
                let members = decode_block(raw, stamp)?;
                let mut kept = Vec::new();
                for m in &members {
                    if m.received_at_ms >= older_than_ms {
                        kept.push((m.received_at_ms, m.seq, m.record.to_vec()));
                        continue;
                    }
                    let record = decode_record(m.record, false)?;
                    let id = id_key(org, &record.event_id);
                    // The index names this block, unless the event was kept again since.
                    if self.tree.get(&id)?.is_some_and(|s| s.as_ref() == stamp) {
                        batch.remove(id);
                    }
                    if record.body.is_none() {
                        for i in 0..record.body_bytes.div_ceil(PIECE) {
                            batch.remove(piece_key(org, &m.seq.to_be_bytes(), i as u32));
                        }
                    }
                    tally.remove(org, record.body_bytes as u64);
                    removed += 1;
                }
                if kept.is_empty() {
                    batch.remove(key);
                } else if kept.len() < members.len() {
                    batch.insert(key, encode_block(&kept));
                }
            }
            counts.commit(&self.tree, batch, tally)?;
        }
    }

    /// One event's payload, with its body.
    pub(crate) fn contains(&self, org: &str, event_id: &str) -> Result<bool> {
        Ok(self.tree.contains_key(id_key(org, event_id))?)
    }

    pub(crate) fn get(&self, org: &str, event_id: &str) -> Result<Option<Payload>> {
        let Some(stamp) = self.tree.get(id_key(org, event_id))? else {
            return Ok(None);
        };
        let Some(raw) = self.tree.get(time_key(org, &stamp))? else {
            return Ok(None);
        };
        let members = decode_block(&raw, &stamp)?;
        let mut found = None;
        for m in &members {
            if decode_record(m.record, false)?.event_id == event_id {
                found = Some(m);
                break;
            }
        }
        let Some(member) = found else {
            return Ok(None);
        };
        let record = decode_record(member.record, true)?;
        let body = match record.body {
            Some(body) => body,
            None => {
                let mut body = Vec::with_capacity(record.body_bytes);
                for i in 0..record.body_bytes.div_ceil(PIECE) {
                    let piece = self
                        .tree
                        .get(piece_key(org, &member.seq.to_be_bytes(), i as u32))?
                        .ok_or_else(|| {
                            Error::Corrupt(format!("payload of `{event_id}` lacks a piece"))
                        })?;
                    body.extend_from_slice(&piece);
                }
                body
            }
        };
        if body.len() != record.body_bytes {
            return Err(Error::Corrupt(format!(
                "payload of `{event_id}` has {} bytes, not {}",
                body.len(),
                record.body_bytes
            )));
        }
        Ok(Some(Payload {
            org: org.to_owned(),
            event_id: record.event_id,
            event_type: record.event_type,
            received_at_ms: member.received_at_ms,
            published_at_ms: record.published_at_ms,
            body,
            body_bytes: record.body_bytes,
        }))
    }

    /// `org`'s payloads received in `[from_ms, to_ms)`, without bodies, at most `limit`,
    /// after `cursor` (the previous page's `next_cursor`: `org ‖ 0 ‖ time ‖ seq` of the
    /// last one's block, and its own seq, in hex). Oldest first within a block, blocks in
    /// the order of their first event.
    pub(crate) fn page(
        &self,
        org: &str,
        from_ms: u64,
        to_ms: u64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Payload>> {
        let invalid = |c: &str| Error::InvalidCursor(c.to_owned());
        let prefix = org_prefix(org);
        // The cursor's block and the seq of the last event returned from it.
        let mut after: Option<(Vec<u8>, u64)> = None;
        let start = match cursor {
            None => time_key(org, &from_ms.saturating_sub(BLOCK_SPAN_MS).to_be_bytes()),
            Some(c) => {
                let raw = unhex(c).ok_or_else(|| invalid(c))?;
                let rest = raw
                    .strip_prefix(prefix.as_slice())
                    .ok_or_else(|| invalid(c))?;
                match rest.len() {
                    // A cursor from before blocks: just past its own entry.
                    16 => {
                        let mut key = time_key(org, rest);
                        key.push(0);
                        key
                    }
                    24 => {
                        let seq =
                            u64::from_be_bytes(rest[16..].try_into().map_err(|_| invalid(c))?);
                        after = Some((rest[..16].to_vec(), seq));
                        time_key(org, &rest[..16])
                    }
                    _ => return Err(invalid(c)),
                }
            }
        };
        let end = time_key(org, &to_ms.to_be_bytes());
        let limit = limit.max(1);
        let mut items = Vec::new();
        let mut last: Option<(Vec<u8>, u64)> = None;
        for entry in self.tree.range(start..end) {
            let (key, raw) = entry?;
            let stamp = stamp_of(&key, org)?;
            for m in decode_block(&raw, stamp)? {
                let seen = after
                    .as_ref()
                    .is_some_and(|(block, seq)| block.as_slice() == stamp && m.seq <= *seq);
                if seen || m.received_at_ms < from_ms || m.received_at_ms >= to_ms {
                    continue;
                }
                if items.len() == limit {
                    let next_cursor = last.map(|(block, seq)| {
                        let mut cursor = prefix.clone();
                        cursor.extend_from_slice(&block);
                        cursor.extend_from_slice(&seq.to_be_bytes());
                        hex(&cursor)
                    });
                    return Ok(Page { items, next_cursor });
                }
                let record = decode_record(m.record, false)?;
                items.push(Payload {
                    org: org.to_owned(),
                    event_id: record.event_id,
                    event_type: record.event_type,
                    received_at_ms: m.received_at_ms,
                    published_at_ms: record.published_at_ms,
                    body: Vec::new(),
                    body_bytes: record.body_bytes,
                });
                last = Some((stamp.to_vec(), m.seq));
            }
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// The offset of the last batch applied from the payloads stream.
    pub(crate) fn applied_offset(&self) -> Result<Option<u64>> {
        self.tree
            .get(APPLIED_KEY)?
            .map(|raw| {
                <[u8; 8]>::try_from(raw.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::Corrupt("payloads offset".into()))
            })
            .transpose()
    }

    fn record_offset(&self, offset: u64) -> Result<()> {
        self.tree.insert(APPLIED_KEY, &offset.to_be_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
