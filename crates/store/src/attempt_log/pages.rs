//! Reading the attempt log: pages of one webhook's attempts, and whether a delivery was
//! settled.

use uuid::Uuid;

use super::{ChunkMeta, Log, by_outcome, decode_chunk, since_start};
use crate::records::{AttemptQuery, AttemptRecord, DELIVERED, Page, attempt_prefix};
use crate::{Error, Result};

/// A cursor names the last attempt a page looked at: its chunk's key and its index there.
pub(super) fn encode_cursor(key: &[u8], index: usize) -> String {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn decode_cursor(cursor: &str, prefix: &[u8]) -> Result<(Vec<u8>, usize)> {
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
    if !key.starts_with(prefix) || by_outcome::is_entry(key) {
        return Err(invalid());
    }
    let index = u32::from_be_bytes(index.try_into().map_err(|_| invalid())?);
    Ok((key.to_vec(), index as usize))
}

/// One webhook's attempts, oldest first, a page at a time. With an outcome, through the
/// index by outcome; from a time, from the chunks that may hold it.
pub(crate) fn page(
    log: &Log,
    subscription_id: &Uuid,
    query: &AttemptQuery,
) -> Result<Page<AttemptRecord>> {
    if let Some(outcome) = &query.outcome {
        return by_outcome::page(log, subscription_id, query, outcome);
    }
    let prefix = attempt_prefix(subscription_id);
    let (mut start, after) = match &query.cursor {
        Some(cursor) => {
            let (key, index) = decode_cursor(cursor, &prefix)?;
            (key.clone(), Some((key, index)))
        }
        None => (prefix.clone(), None),
    };
    if let Some(since) = query.since_ms {
        start = start.max(since_start(subscription_id, since));
    }
    let limit = query.limit.max(1);
    let mut items = Vec::new();
    let mut last = None;
    for key in log
        .keys
        .range(start..by_outcome::chunks_end(subscription_id))
        .keys()
    {
        let key = key?;
        // Chunks sort by their first attempt: none after one that starts past the window.
        let meta = ChunkMeta::parse(&key)?;
        if query.until_ms.is_some_and(|t| meta.first_at_ms >= t) {
            break;
        }
        // A chunk wholly before the window is skipped by its key, undecoded.
        if query.since_ms.is_some_and(|t| meta.last_at_ms < t) {
            continue;
        }
        // The cursor's own chunk resumes after the cursor's attempt.
        let skip = match &after {
            Some((cursor_key, index)) if cursor_key.as_slice() == key.as_ref() => index + 1,
            _ => 0,
        };
        // A key whose chunk is gone was left by a crash during a prune: nothing to read.
        let Some(raw) = log.chunks.get(&key)? else {
            continue;
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
            if in_window {
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
    log: &Log,
    subscription_id: &Uuid,
    message_id: &str,
    delivered_since_ms: u64,
    attempted_since_ms: u64,
    attempt: u32,
) -> Result<bool> {
    let since_ms = delivered_since_ms.min(attempted_since_ms);
    let start = since_start(subscription_id, since_ms);
    for key in log
        .keys
        .range(start..by_outcome::chunks_end(subscription_id))
        .keys()
    {
        let key = key?;
        if ChunkMeta::parse(&key)?.last_at_ms < since_ms {
            continue;
        }
        let Some(raw) = log.chunks.get(&key)? else {
            continue;
        };
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
