//! The attempt log's layout: attempts are kept in chunks, one sled value per webhook per
//! chunk of up to [`CHUNK`] attempts, keyed `subscription ‖ first time ‖ seq ‖ last time ‖
//! count`. The key sorts by first time; the rest lets pruning judge most chunks without
//! decoding them.
//!
//! A chunk, not a key per attempt, because a sled insert costs far more than the bytes it
//! writes (docs/history.md). A batch of attempts to one
//! webhook is now a few inserts. Values written by earlier builds (one attempt each) are
//! still read.

use std::collections::HashSet;

use uuid::Uuid;

use crate::records::{
    AttemptQuery, AttemptRecord, DELIVERED, Page, attempt_prefix, decode, encode,
};
use crate::{Error, Result};

/// At most this many attempts in one value: small enough that paging and pruning, which
/// decode and rewrite whole chunks, stay cheap (a chunk is at most ~80 KiB with excerpts).
const CHUNK: usize = 64;
/// Removals and rewrites go to sled in slices: one batch of every removal once took
/// serve's memory from 90 MiB to 1.5 GiB for 300k attempts (measured with the benchmark).
const SLICE: usize = 1000;
/// Where the offset of the last batch applied from the attempts stream is kept, in the
/// attempt tree itself so that one sled batch writes it with the batch's chunks. No chunk
/// key is this short.
const APPLIED_KEY: &[u8] = b"\xffapplied_offset";
/// A stream batch's chunks are numbered in the low bits of their sequence.
const STREAM_INDEX_BITS: u32 = 20;

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
pub(crate) fn record(tree: &sled::Tree, db: &sled::Db, records: &[AttemptRecord]) -> Result<()> {
    let mut next = || db.generate_id().map_err(Error::from);
    let batch = chunked(records, &mut next)?;
    Ok(tree.apply_batch(batch)?)
}

/// Appends the attempts stream's batch at `offset`, and records the offset, in one sled
/// batch: a crash keeps both or neither. Chunk keys come from the offset, not from this
/// node's id generator, so every node that applies the batch holds the same keys (and
/// hands out the same cursors). A batch at or before the offset applied last was applied
/// already (a reader that reconnected, or a redelivery): it changes nothing, and `false`
/// says so.
pub(crate) fn apply(tree: &sled::Tree, records: &[AttemptRecord], offset: u64) -> Result<bool> {
    if applied_offset(tree)?.is_some_and(|applied| applied >= offset) {
        return Ok(false);
    }
    let mut index = 0u64;
    let mut next = || {
        let seq = stream_seq(offset, index)?;
        index += 1;
        Ok(seq)
    };
    let mut batch = chunked(records, &mut next)?;
    batch.insert(APPLIED_KEY, &offset.to_be_bytes());
    tree.apply_batch(batch)?;
    Ok(true)
}

/// The offset of the last batch applied from the attempts stream; `None` before the first.
pub(crate) fn applied_offset(tree: &sled::Tree) -> Result<Option<u64>> {
    tree.get(APPLIED_KEY)?
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
fn chunked(
    records: &[AttemptRecord],
    next_seq: &mut dyn FnMut() -> Result<u64>,
) -> Result<sled::Batch> {
    let mut sorted: Vec<&AttemptRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.subscription_id, r.at_ms));
    let mut batch = sled::Batch::default();
    for group in sorted.chunk_by(|a, b| a.subscription_id == b.subscription_id) {
        for chunk in group.chunks(CHUNK) {
            let meta = ChunkMeta::of(chunk, next_seq()?);
            batch.insert(meta.key(&chunk[0].subscription_id), encode(&chunk)?);
        }
    }
    Ok(batch)
}

/// Drops attempts older than `older_than_ms`, and beyond the newest `keep_per_webhook` of
/// each webhook. Keys tell whether a chunk stays or goes whole; only a chunk that loses
/// some of its attempts is decoded, and rewritten under a new key.
pub(crate) fn prune(tree: &sled::Tree, older_than_ms: u64, keep_per_webhook: usize) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    let (mut current, mut kept) = (Vec::new(), 0usize);
    // A rewritten chunk may sort below its old key, where this walk (which sees applied
    // slices) would meet it again; it was counted already.
    let mut rewritten = HashSet::new();
    // Newest first within each webhook, so the count keeps the newest.
    for entry in tree.iter().rev() {
        let (key, raw) = entry?;
        if rewritten.contains(key.as_ref()) || key.as_ref() == APPLIED_KEY {
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
        batch.remove(key.clone());
        if meta.last_at_ms >= older_than_ms && room > 0 {
            // Oldest first within a chunk: keep the newest young ones that fit.
            let chunk = decode_chunk(&raw)?;
            let young = chunk.iter().filter(|r| r.at_ms >= older_than_ms).count();
            let keep: Vec<&AttemptRecord> =
                chunk.iter().rev().take(young.min(room)).rev().collect();
            kept += keep.len();
            if !keep.is_empty() {
                let new_key = ChunkMeta::of(&keep, meta.seq).key(&keep[0].subscription_id);
                batch.insert(new_key.as_slice(), encode(&keep)?);
                rewritten.insert(new_key);
            }
        }
        pending += 1;
        if pending >= SLICE {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    Ok(tree.apply_batch(batch)?)
}

/// A cursor names the last attempt a page looked at: its chunk's key and its index there.
fn encode_cursor(key: &[u8], index: usize) -> String {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str, prefix: &[u8]) -> Result<(Vec<u8>, usize)> {
    let invalid = || Error::InvalidCursor(cursor.to_owned());
    if !cursor.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let split = bytes.len().checked_sub(4).ok_or_else(invalid)?;
    let (key, index) = bytes.split_at(split);
    if !key.starts_with(prefix) {
        return Err(invalid());
    }
    let index = u32::from_be_bytes(index.try_into().map_err(|_| invalid())?);
    Ok((key.to_vec(), index as usize))
}

/// One webhook's attempts, oldest first, a page at a time.
pub(crate) fn page(
    tree: &sled::Tree,
    subscription_id: &Uuid,
    query: &AttemptQuery,
) -> Result<Page<AttemptRecord>> {
    let prefix = attempt_prefix(subscription_id);
    let (start, after) = match &query.cursor {
        Some(cursor) => {
            let (key, index) = decode_cursor(cursor, &prefix)?;
            (key.clone(), Some((key, index)))
        }
        None => (prefix.clone(), None),
    };
    let limit = query.limit.max(1);
    let mut items = Vec::new();
    let mut last = None;
    for entry in tree.range(start..) {
        let (key, raw) = entry?;
        if !key.starts_with(&prefix) {
            break;
        }
        // A chunk wholly outside the time window is skipped by its key, undecoded.
        let meta = ChunkMeta::parse(&key)?;
        if query.since_ms.is_some_and(|t| meta.last_at_ms < t)
            || query.until_ms.is_some_and(|t| meta.first_at_ms >= t)
        {
            continue;
        }
        // The cursor's own chunk resumes after the cursor's attempt.
        let skip = match &after {
            Some((cursor_key, index)) if cursor_key.as_slice() == key.as_ref() => index + 1,
            _ => 0,
        };
        for (i, record) in decode_chunk(&raw)?.into_iter().enumerate().skip(skip) {
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next_cursor: last.map(|(k, i): (sled::IVec, usize)| encode_cursor(&k, i)),
                });
            }
            last = Some((key.clone(), i));
            let in_window = query.since_ms.is_none_or(|t| record.at_ms >= t)
                && query.until_ms.is_none_or(|t| record.at_ms < t);
            let outcome = query.outcome.as_ref().is_none_or(|o| *o == record.outcome);
            if in_window && outcome {
                items.push(record);
            }
        }
    }
    Ok(Page {
        items,
        next_cursor: None,
    })
}

/// Whether the delivery `message_id` to `subscription_id` was settled from its
/// `attempt`-th attempt on: an attempt at or after `delivered_since_ms` delivered it, or
/// one numbered `attempt` or later was made at or after `attempted_since_ms` (its record
/// is written once what it decided, a retry scheduled or a dead letter, is durable).
/// Chunks that end before both are judged by their keys, so the cost is that of decoding
/// the webhook's attempts since then.
pub(crate) fn settled_since(
    tree: &sled::Tree,
    subscription_id: &Uuid,
    message_id: &str,
    delivered_since_ms: u64,
    attempted_since_ms: u64,
    attempt: u32,
) -> Result<bool> {
    let prefix = attempt_prefix(subscription_id);
    let since_ms = delivered_since_ms.min(attempted_since_ms);
    for entry in tree.scan_prefix(&prefix) {
        let (key, raw) = entry?;
        if ChunkMeta::parse(&key)?.last_at_ms < since_ms {
            continue;
        }
        let settled = decode_chunk(&raw)?.iter().any(|r| {
            r.message_id == message_id
                && ((r.outcome == DELIVERED && r.at_ms >= delivered_since_ms)
                    || (r.attempt >= attempt && r.at_ms >= attempted_since_ms))
        });
        if settled {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(subscription_id: Uuid, attempt: u32, at_ms: u64) -> AttemptRecord {
        AttemptRecord {
            subscription_id,
            event_id: "e1".into(),
            message_id: "msg_1".into(),
            attempt,
            at_ms,
            outcome: "delivered".into(),
            status: Some(200),
            latency_ms: 1,
            error_kind: None,
            error: None,
            response_excerpt: String::new(),
            transformed: None,
        }
    }

    fn attempts_of(tree: &sled::Tree, sub: Uuid) -> Vec<u32> {
        let query = AttemptQuery {
            limit: 100,
            ..AttemptQuery::default()
        };
        let page = page(tree, &sub, &query).expect("page");
        page.items.iter().map(|r| r.attempt).collect()
    }

    #[test]
    fn reads_and_prunes_the_one_attempt_values_of_earlier_builds() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("attempts").expect("tree");
        let sub = Uuid::now_v7();
        // Earlier builds: `subscription ‖ time ‖ seq` → one attempt.
        for (n, at) in [(1u32, 100u64), (2, 200)] {
            let mut key = attempt_prefix(&sub);
            key.extend_from_slice(&at.to_be_bytes());
            key.extend_from_slice(&u64::from(n).to_be_bytes());
            tree.insert(key, encode(&attempt(sub, n, at)).expect("encode"))
                .expect("insert");
        }
        record(&tree, &db, &[attempt(sub, 3, 300)]).expect("record");
        assert_eq!(attempts_of(&tree, sub), [1, 2, 3]);
        prune(&tree, 150, 10).expect("prune");
        assert_eq!(attempts_of(&tree, sub), [2, 3], "by age");
        prune(&tree, 0, 1).expect("prune");
        assert_eq!(attempts_of(&tree, sub), [3], "by count");
    }

    /// Two batches of 100 attempts (two chunks each) an hour apart, alternately delivered
    /// and failed, each with its own `webhook-id`.
    fn two_batches(tree: &sled::Tree, db: &sled::Db, sub: Uuid) {
        for (batch, base) in [(0u32, 1_000u64), (1, 3_601_000)] {
            let records: Vec<_> = (0..100u32)
                .map(|i| {
                    let n = batch * 100 + i;
                    AttemptRecord {
                        message_id: format!("msg_{n}"),
                        outcome: if n % 2 == 0 { DELIVERED } else { "retry" }.into(),
                        ..attempt(sub, n, base + u64::from(i))
                    }
                })
                .collect();
            record(tree, db, &records).expect("record");
        }
    }

    #[test]
    fn settled_since_finds_a_delivered_attempt_or_the_attempt_asked_in_its_window() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("attempts").expect("tree");
        let (sub, other) = (Uuid::now_v7(), Uuid::now_v7());
        two_batches(&tree, &db, sub);
        let found = |sub: &Uuid, id: &str, since: u64, attempt: u32| {
            settled_since(&tree, sub, id, since, since, attempt).expect("lookup")
        };
        assert!(found(&sub, "msg_0", 0, 1), "delivered");
        assert!(found(&sub, "msg_150", 3_000_000, 1), "in a later chunk");
        assert!(
            found(&sub, "msg_150", 3_000_000, 999),
            "delivered, whatever the attempt"
        );
        assert!(
            found(&sub, "msg_1", 0, 1),
            "its attempt 1 failed and settled"
        );
        assert!(
            !found(&sub, "msg_1", 0, 2),
            "its attempt 2 is yet to be made"
        );
        assert!(!found(&sub, "msg_0", 1_001, 1), "before the window");
        assert!(
            !found(&sub, "msg_0", 3_000_000, 1),
            "in a chunk the key skips"
        );
        assert!(!found(&other, "msg_0", 0, 1), "another webhook's");
        assert!(!found(&sub, "msg_999", 0, 1), "never attempted");
        let windows = |delivered_since: u64, attempted_since: u64, id: &str| {
            settled_since(&tree, &sub, id, delivered_since, attempted_since, 1).expect("lookup")
        };
        assert!(windows(0, 5_000_000, "msg_0"), "delivered in its window");
        assert!(
            !windows(0, 5_000_000, "msg_1"),
            "attempted before its window"
        );
        assert!(windows(5_000_000, 0, "msg_1"), "attempted in its window");
    }

    #[test]
    fn a_time_window_pages_the_same_attempts_as_a_filter_over_the_whole_log() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("attempts").expect("tree");
        let sub = Uuid::now_v7();
        two_batches(&tree, &db, sub);
        let window = |since_ms, until_ms| {
            let mut query = AttemptQuery {
                since_ms,
                until_ms,
                limit: 30,
                ..AttemptQuery::default()
            };
            let mut seen = Vec::new();
            loop {
                let page = page(&tree, &sub, &query).expect("page");
                seen.extend(page.items.iter().map(|r| r.attempt));
                match page.next_cursor {
                    Some(cursor) => query.cursor = Some(cursor),
                    None => return seen,
                }
            }
        };
        assert_eq!(window(None, None), (0..200).collect::<Vec<_>>());
        assert_eq!(
            window(Some(3_601_050), None),
            (150..200).collect::<Vec<_>>()
        );
        assert_eq!(window(None, Some(1_070)), (0..70).collect::<Vec<_>>());
        assert_eq!(
            window(Some(1_090), Some(3_601_010)),
            (90..110).collect::<Vec<_>>()
        );
        assert!(window(Some(2_000), Some(3_000)).is_empty());
    }
}
