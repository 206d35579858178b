//! The attempt log's index by outcome, so that `outcome=` reads only the chunks that hold
//! the outcome asked, from where the page starts, rather than decoding the webhook's
//! whole log. One entry per chunk and outcome present:
//! `subscription ‖ 0xff ‖ outcome ‖ the chunk key's tail` → the positions in the chunk of
//! its attempts with that outcome (u16 each).
//!
//! The entries live in the key tree, so that the sled batch that writes or prunes a
//! chunk's key writes or removes its entries too. A chunk key's byte 16 is the top byte
//! of a time in ms (0 until the year 2,000,000), so an entry sorts after every chunk of
//! its webhook and no chunk key is taken for one.

use serde_json::value::RawValue;
use uuid::Uuid;

use super::pages::{decode_cursor, encode_cursor};
use super::{APPLIED_KEY, ChunkMeta, Log, Writes, since_start};
use crate::records::{
    AttemptQuery, AttemptRecord, DELIVERED, Page, attempt_prefix, decode, decode_raw,
};
use crate::{Error, Result};

/// Byte 16 of an index entry's key.
pub(super) const TAG: u8 = 0xff;
/// The outcomes with a code of their own (1…); any other one is 0.
const OUTCOMES: [&str; 4] = [DELIVERED, "retry", "permanent", "gone"];
/// Every code: a chunk whose outcomes are unknown (being removed unread) may hold any.
const CODES: std::ops::RangeInclusive<u8> = 0..=4;

fn code(outcome: &str) -> u8 {
    OUTCOMES
        .iter()
        .position(|o| *o == outcome)
        .map_or(0, |i| i as u8 + 1)
}

/// Whether `key` is an index entry's rather than a chunk's.
pub(super) fn is_entry(key: &[u8]) -> bool {
    key.len() > 17 && key[16] == TAG
}

/// The end of a webhook's chunks: where its index entries begin.
pub(super) fn chunks_end(subscription_id: &Uuid) -> Vec<u8> {
    let mut key = attempt_prefix(subscription_id);
    key.push(TAG);
    key
}

fn outcome_prefix(subscription_id: &Uuid, code: u8) -> Vec<u8> {
    let mut key = chunks_end(subscription_id);
    key.push(code);
    key
}

/// The entry key of chunk `chunk_key` for outcome `code`.
fn entry_key(chunk_key: &[u8], code: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(chunk_key.len() + 2);
    key.extend_from_slice(&chunk_key[..16]);
    key.push(TAG);
    key.push(code);
    key.extend_from_slice(&chunk_key[16..]);
    key
}

/// The chunk key an entry key points to.
fn chunk_key_of(entry: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(entry.len() - 2);
    key.extend_from_slice(&entry[..16]);
    key.extend_from_slice(&entry[18..]);
    key
}

/// Adds to `batch` the entries of the chunk `chunk_key` holding `records`.
pub(super) fn insert(batch: &mut sled::Batch, chunk_key: &[u8], records: &[&AttemptRecord]) {
    let mut by_code: [Vec<u8>; 5] = Default::default();
    for (i, r) in records.iter().enumerate() {
        let position = u16::try_from(i).unwrap_or(u16::MAX);
        by_code[usize::from(code(&r.outcome))].extend_from_slice(&position.to_be_bytes());
    }
    for (c, positions) in by_code.iter().enumerate() {
        if !positions.is_empty() {
            batch.insert(entry_key(chunk_key, c as u8), positions.as_slice());
        }
    }
}

/// Adds to `batch` the removal of every entry the chunk `chunk_key` may have: pruning
/// judges most chunks by their keys alone, without reading which outcomes they hold.
pub(super) fn remove(batch: &mut sled::Batch, chunk_key: &[u8]) {
    for c in CODES {
        batch.remove(entry_key(chunk_key, c));
    }
}

fn positions(raw: &[u8]) -> Result<Vec<usize>> {
    if !raw.len().is_multiple_of(2) {
        return Err(Error::Corrupt("attempt index positions".into()));
    }
    Ok(raw
        .chunks_exact(2)
        .map(|p| usize::from(u16::from_be_bytes([p[0], p[1]])))
        .collect())
}

/// One webhook's attempts with `query.outcome`, oldest first, a page at a time: the
/// entries of that outcome from the page's start, and only their attempts decoded. The
/// cursor is a plain page's (the chunk key and the position of the last attempt).
pub(super) fn page(
    log: &Log,
    subscription_id: &Uuid,
    query: &AttemptQuery,
    outcome: &str,
) -> Result<Page<AttemptRecord>> {
    let chunk_prefix = attempt_prefix(subscription_id);
    let prefix = outcome_prefix(subscription_id, code(outcome));
    let after = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, &chunk_prefix))
        .transpose()?;
    let mut start = match &after {
        Some((key, _)) => entry_key(key, code(outcome)),
        None => prefix.clone(),
    };
    if let Some(since) = query.since_ms {
        let seek = entry_key(&since_start(subscription_id, since), code(outcome));
        start = start.max(seek);
    }
    let limit = query.limit.max(1);
    let mut items = Vec::new();
    let mut last: Option<(Vec<u8>, usize)> = None;
    for entry in log.keys.range(start..) {
        let (key, raw_positions) = entry?;
        if !key.starts_with(&prefix) {
            break;
        }
        let chunk_key = chunk_key_of(&key);
        let meta = ChunkMeta::parse(&chunk_key)?;
        if query.until_ms.is_some_and(|t| meta.first_at_ms >= t) {
            break;
        }
        if query.since_ms.is_some_and(|t| meta.last_at_ms < t) {
            continue;
        }
        let skip = match &after {
            Some((cursor_key, index)) if *cursor_key == chunk_key => Some(*index),
            _ => None,
        };
        let wanted: Vec<usize> = positions(&raw_positions)?
            .into_iter()
            .filter(|p| skip.is_none_or(|s| *p > s))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        // An entry without its chunk was left by a crash during a prune: nothing to read.
        let Some(raw) = log.chunks.get(&chunk_key)? else {
            continue;
        };
        let chunk = raw_chunk(&raw)?;
        for p in wanted {
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next_cursor: last.map(|(k, i)| encode_cursor(&k, i)),
                });
            }
            let Some(one) = chunk.get(p) else {
                return Err(Error::Corrupt("attempt index past its chunk".into()));
            };
            let record: AttemptRecord = decode(one.get().as_bytes())?;
            last = Some((chunk_key.clone(), p));
            let in_window = query.since_ms.is_none_or(|t| record.at_ms >= t)
                && query.until_ms.is_none_or(|t| record.at_ms < t);
            if in_window && record.outcome == outcome {
                items.push(record);
            }
        }
    }
    Ok(Page {
        items,
        next_cursor: None,
    })
}

/// A chunk's attempts, each still as JSON: only those a page wants are decoded.
fn raw_chunk(raw: &[u8]) -> Result<Vec<&RawValue>> {
    if raw.first() == Some(&b'[') {
        decode_raw(raw)
    } else {
        Ok(vec![decode_raw::<&RawValue>(raw)?])
    }
}

/// Builds the key tree from the chunks (a store written before it existed): the tree is
/// cleared, then each chunk is read once and its key and entries written, `slice` chunks
/// per sled batch, and the applied offset copied. Chunks wider than
/// [`super::MAX_SPAN_MS`] (earlier builds bounded only their count) are split, so that a
/// time seek finds every chunk of its window. It reads the whole log once.
pub(super) fn rebuild(log: &Log, slice: usize) -> Result<usize> {
    log.keys.clear()?;
    let mut writes = Writes::default();
    let (mut pending, mut chunks) = (0, 0);
    // Backwards: a split chunk's later pieces sort after it, where the walk has been.
    for entry in log.chunks.iter().rev() {
        let (key, raw) = entry?;
        if key.as_ref() == APPLIED_KEY {
            writes.keys.insert(APPLIED_KEY, raw);
            continue;
        }
        if key.len() < 32 {
            continue;
        }
        let records = super::decode_chunk(&raw)?;
        let refs: Vec<&AttemptRecord> = records.iter().collect();
        let pieces = super::by_span(&refs);
        if pieces.len() == 1 {
            writes.keys.insert(key.as_ref(), &[]);
            insert(&mut writes.keys, &key, &refs);
        } else {
            let seq = ChunkMeta::parse(&key)?.seq;
            writes.remove(&key);
            for piece in pieces {
                let piece_key = ChunkMeta::of(piece, seq).key(&piece[0].subscription_id);
                writes.put(&piece_key, piece)?;
            }
        }
        chunks += 1;
        pending += 1;
        if pending >= slice {
            std::mem::take(&mut writes).apply(log)?;
            pending = 0;
        }
    }
    writes.apply(log)?;
    Ok(chunks)
}
