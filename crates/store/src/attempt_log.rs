//! The attempt log's layout: attempts are kept in chunks, one sled value per webhook per
//! chunk of up to [`CHUNK`] attempts, keyed `subscription ‖ first time ‖ seq ‖ last time ‖
//! count`. The key sorts by first time; the rest lets pruning judge most chunks without
//! decoding them.
//!
//! A chunk, not a key per attempt, because a sled insert costs far more than the bytes it
//! writes (docs/history.md). A batch of attempts to one
//! webhook is now a few inserts. Values written by earlier builds (one attempt each) are
//! still read.
//!
//! The keys are kept twice: with the chunks (`attempts`), and alone with the index by
//! outcome and the applied offset (`attempt_keys`, [`Log::keys`]). Pruning walks every
//! key each minute, and a sled walk reads whole leaves, values included: over the chunks
//! it read the whole log into memory, where sled's cache (whose evictions are judged
//! only every 64 reads of one of its 256 shards) kept it. Over the keys alone it reads
//! about 100 bytes a chunk; the chunks are read only to be listed or rewritten.

use std::collections::HashSet;

use uuid::Uuid;

use crate::records::{AttemptRecord, attempt_prefix, decode, encode};
use crate::{Error, Result};

/// At most this many attempts in one value: small enough that paging and pruning, which
/// decode and rewrite whole chunks, stay cheap (a chunk is at most ~80 KiB with excerpts).
const CHUNK: usize = 64;
/// Removals and rewrites go to sled in slices: one batch of every removal once took
/// serve's memory from 90 MiB to 1.5 GiB for 300k attempts (measured with the benchmark).
const SLICE: usize = 1000;
/// Where the offset of the last batch applied from the attempts stream is kept, in the
/// key tree so that one sled batch writes it with the batch's keys. No chunk key is this
/// short.
const APPLIED_KEY: &[u8] = b"\xffapplied_offset";
/// A stream batch's chunks are numbered in the low bits of their sequence.
const STREAM_INDEX_BITS: u32 = 20;
/// The most time between a chunk's first and last attempt (ms): chunks sort by their
/// first, so a page from a time starts this much earlier and misses none. A batch's
/// attempts are a few ms apart, unless one took long (then it gets a chunk of its own).
const MAX_SPAN_MS: u64 = 10_000;

mod by_outcome;
mod pages;

pub(crate) use pages::{page, settled_since};

/// The attempt log's two trees.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    /// Every chunk's key (with an empty value), the index by outcome ([`by_outcome`]) and
    /// [`APPLIED_KEY`]: what pruning walks.
    keys: sled::Tree,
    /// Chunk key → its attempts, as JSON.
    chunks: sled::Tree,
}

impl Log {
    pub(crate) fn open(db: &sled::Db) -> Result<Self> {
        Ok(Self {
            keys: db.open_tree("attempt_keys")?,
            chunks: db.open_tree("attempts")?,
        })
    }
}

/// The writes of one step, to both trees.
#[derive(Default)]
struct Writes {
    chunks: sled::Batch,
    keys: sled::Batch,
}

impl Writes {
    /// Writes the chunk `key` holding `records`, its key and its index entries.
    fn put(&mut self, key: &[u8], records: &[&AttemptRecord]) -> Result<()> {
        self.chunks.insert(key, encode(&records)?);
        self.keys.insert(key, &[]);
        by_outcome::insert(&mut self.keys, key, records);
        Ok(())
    }

    /// Removes the chunk `key`, its key and its index entries.
    fn remove(&mut self, key: &[u8]) {
        self.chunks.remove(key);
        self.keys.remove(key);
        by_outcome::remove(&mut self.keys, key);
    }

    /// The chunks first: sled recovers a prefix of its log, so a crash between the two
    /// leaves at worst chunks that no key names yet (a local batch's), or keys whose
    /// chunk is gone (a prune's), which reads skip and the next prune removes.
    fn apply(self, log: &Log) -> Result<()> {
        log.chunks.apply_batch(self.chunks)?;
        log.keys.apply_batch(self.keys)?;
        Ok(())
    }
}

/// What a chunk's key says about it.
#[derive(Debug, Clone, Copy)]
struct ChunkMeta {
    first_at_ms: u64,
    seq: u64,
    last_at_ms: u64,
    count: usize,
}

impl ChunkMeta {
    fn of(records: &[&AttemptRecord], seq: u64) -> Self {
        Self {
            first_at_ms: records.first().map_or(0, |r| r.at_ms),
            seq,
            last_at_ms: records.last().map_or(0, |r| r.at_ms),
            count: records.len(),
        }
    }

    fn key(&self, subscription_id: &Uuid) -> Vec<u8> {
        let mut key = attempt_prefix(subscription_id);
        key.extend_from_slice(&self.first_at_ms.to_be_bytes());
        key.extend_from_slice(&self.seq.to_be_bytes());
        key.extend_from_slice(&self.last_at_ms.to_be_bytes());
        key.extend_from_slice(&u32::try_from(self.count).unwrap_or(u32::MAX).to_be_bytes());
        key
    }

    /// Reads a key back; earlier builds' keys (`subscription ‖ time ‖ seq`) hold one attempt.
    fn parse(key: &[u8]) -> Result<Self> {
        let u64_at = |at: usize| {
            key.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        let corrupt = || Error::Corrupt(format!("attempt log key of {} bytes", key.len()));
        let (first_at_ms, seq) = (
            u64_at(16).ok_or_else(corrupt)?,
            u64_at(24).ok_or_else(corrupt)?,
        );
        if key.len() == 32 {
            return Ok(Self {
                first_at_ms,
                seq,
                last_at_ms: first_at_ms,
                count: 1,
            });
        }
        let count = key
            .get(40..44)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(corrupt)?;
        Ok(Self {
            first_at_ms,
            seq,
            last_at_ms: u64_at(32).ok_or_else(corrupt)?,
            count: count as usize,
        })
    }
}

/// A chunk, or one attempt as earlier builds wrote it.
fn decode_chunk(raw: &[u8]) -> Result<Vec<AttemptRecord>> {
    if raw.first() == Some(&b'[') {
        decode(raw)
    } else {
        Ok(vec![decode(raw)?])
    }
}

/// Appends `records`, grouped by webhook and ordered by time within each chunk.
pub(crate) fn record(log: &Log, db: &sled::Db, records: &[AttemptRecord]) -> Result<()> {
    let mut next = || db.generate_id().map_err(Error::from);
    chunked(records, &mut next)?.apply(log)
}

/// Appends the attempts stream's batch at `offset`, and records the offset, in one sled
/// batch: a crash keeps both or neither. Chunk keys come from the offset, not from this
/// node's id generator, so every node that applies the batch holds the same keys (and
/// hands out the same cursors). A batch at or before the offset applied last was applied
/// already (a reader that reconnected, or a redelivery): it changes nothing, and `false`
/// says so.
pub(crate) fn apply(log: &Log, records: &[AttemptRecord], offset: u64) -> Result<bool> {
    if applied_offset(log)?.is_some_and(|applied| applied >= offset) {
        return Ok(false);
    }
    let mut index = 0u64;
    let mut next = || {
        let seq = stream_seq(offset, index)?;
        index += 1;
        Ok(seq)
    };
    let mut writes = chunked(records, &mut next)?;
    writes.keys.insert(APPLIED_KEY, &offset.to_be_bytes());
    writes.apply(log)?;
    Ok(true)
}

/// The offset of the last batch applied from the attempts stream; `None` before the first.
pub(crate) fn applied_offset(log: &Log) -> Result<Option<u64>> {
    log.keys
        .get(APPLIED_KEY)?
        .map(|raw| {
            <[u8; 8]>::try_from(raw.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt("attempts applied offset".into()))
        })
        .transpose()
}

/// The sequence of the `index`th chunk of the stream's batch at `offset`: the top bit
/// keeps it apart from the ids sled generates for this node's own chunks.
fn stream_seq(offset: u64, index: u64) -> Result<u64> {
    if index >= 1 << STREAM_INDEX_BITS || offset >= 1 << (63 - STREAM_INDEX_BITS) {
        return Err(Error::Corrupt(format!(
            "attempts stream batch at offset {offset} has too many chunks"
        )));
    }
    Ok(1 << 63 | offset << STREAM_INDEX_BITS | index)
}

/// `records` as chunks, grouped by webhook and ordered by time within each chunk (ties in
/// the order given), each under a sequence from `next_seq`.
fn chunked(records: &[AttemptRecord], next_seq: &mut dyn FnMut() -> Result<u64>) -> Result<Writes> {
    let mut sorted: Vec<&AttemptRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.subscription_id, r.at_ms));
    let mut writes = Writes::default();
    for group in sorted.chunk_by(|a, b| a.subscription_id == b.subscription_id) {
        for chunk in group.chunks(CHUNK).flat_map(by_span) {
            let key = ChunkMeta::of(chunk, next_seq()?).key(&chunk[0].subscription_id);
            writes.put(&key, chunk)?;
        }
    }
    Ok(writes)
}

/// `records` (in time order) in pieces of at most [`MAX_SPAN_MS`] each.
fn by_span<'a, 'r>(records: &'a [&'r AttemptRecord]) -> Vec<&'a [&'r AttemptRecord]> {
    let mut pieces = Vec::with_capacity(1);
    let mut rest = records;
    while let Some(first) = rest.first() {
        let end = rest
            .iter()
            .position(|r| r.at_ms.saturating_sub(first.at_ms) > MAX_SPAN_MS)
            .unwrap_or(rest.len());
        let (piece, after) = rest.split_at(end);
        pieces.push(piece);
        rest = after;
    }
    pieces
}

/// Where a webhook's chunks that may hold attempts at or after `since_ms` begin.
fn since_start(subscription_id: &Uuid, since_ms: u64) -> Vec<u8> {
    let mut key = attempt_prefix(subscription_id);
    key.extend_from_slice(&since_ms.saturating_sub(MAX_SPAN_MS).to_be_bytes());
    key
}

/// Builds the key tree of a log written before it existed (its keys, the index by
/// outcome, the applied offset), and splits the chunks wider than [`MAX_SPAN_MS`]; the
/// chunks read.
pub(crate) fn rebuild_keys(log: &Log) -> Result<usize> {
    by_outcome::rebuild(log, SLICE)
}

/// Drops attempts older than `older_than_ms`, and beyond the newest `keep_per_webhook` of
/// each webhook. Keys tell whether a chunk stays or goes whole; only a chunk that loses
/// some of its attempts is read, and rewritten under a new key.
pub(crate) fn prune(log: &Log, older_than_ms: u64, keep_per_webhook: usize) -> Result<()> {
    let mut writes = Writes::default();
    let mut pending = 0;
    let (mut current, mut kept) = (Vec::new(), 0usize);
    // A rewritten chunk may sort below its old key, where this walk (which sees applied
    // slices) would meet it again; it was counted already.
    let mut rewritten = HashSet::new();
    // Newest first within each webhook, so the count keeps the newest.
    for key in log.keys.iter().keys().rev() {
        let key = key?;
        if rewritten.contains(key.as_ref())
            || key.as_ref() == APPLIED_KEY
            || by_outcome::is_entry(&key)
        {
            continue;
        }
        if key.get(..16) != Some(current.as_slice()) {
            current = key.get(..16).unwrap_or_default().to_vec();
            kept = 0;
        }
        let meta = ChunkMeta::parse(&key)?;
        let room = keep_per_webhook.saturating_sub(kept);
        if meta.first_at_ms >= older_than_ms && meta.count <= room {
            kept += meta.count;
            continue;
        }
        writes.remove(&key);
        let raw = match meta.last_at_ms >= older_than_ms && room > 0 {
            true => log.chunks.get(&key)?,
            false => None,
        };
        if let Some(raw) = raw {
            // Oldest first within a chunk: keep the newest young ones that fit.
            let chunk = decode_chunk(&raw)?;
            let young = chunk.iter().filter(|r| r.at_ms >= older_than_ms).count();
            let keep: Vec<&AttemptRecord> =
                chunk.iter().rev().take(young.min(room)).rev().collect();
            kept += keep.len();
            if !keep.is_empty() {
                let new_key = ChunkMeta::of(&keep, meta.seq).key(&keep[0].subscription_id);
                writes.put(&new_key, &keep)?;
                rewritten.insert(new_key);
            }
        }
        pending += 1;
        if pending >= SLICE {
            std::mem::take(&mut writes).apply(log)?;
            pending = 0;
        }
    }
    writes.apply(log)
}

#[cfg(test)]
mod tests;
