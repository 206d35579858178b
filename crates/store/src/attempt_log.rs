//! The attempt log's layout: attempts are kept in chunks, one sled value per webhook per
//! chunk of up to [`CHUNK`] attempts, keyed `subscription ‖ first time ‖ seq`.
//!
//! A chunk, not a key per attempt, because a sled insert costs far more than the bytes it
//! writes: one key per attempt made the log a third of `serve`'s CPU per delivery
//! (measured with `hookwire-bench`, README "Performance"). A batch of attempts to one
//! webhook is now a few inserts. Values written by earlier builds (one attempt each) are
//! still read.

use uuid::Uuid;

use crate::records::{AttemptQuery, AttemptRecord, Page, attempt_prefix, decode, encode};
use crate::{Error, Result};

/// At most this many attempts in one value: small enough that paging and pruning, which
/// decode and rewrite whole chunks, stay cheap (a chunk is at most ~80 KiB with excerpts).
const CHUNK: usize = 64;
/// Removals and rewrites go to sled in slices: one batch of every removal once took
/// serve's memory from 90 MiB to 1.5 GiB for 300k attempts (measured with the benchmark).
const SLICE: usize = 1000;

fn chunk_key(subscription_id: &Uuid, first_at_ms: u64, seq: u64) -> Vec<u8> {
    let mut key = attempt_prefix(subscription_id);
    key.extend_from_slice(&first_at_ms.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
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
    let mut sorted: Vec<&AttemptRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.subscription_id, r.at_ms));
    let mut batch = sled::Batch::default();
    for group in sorted.chunk_by(|a, b| a.subscription_id == b.subscription_id) {
        for chunk in group.chunks(CHUNK) {
            let first = chunk[0];
            let key = chunk_key(&first.subscription_id, first.at_ms, db.generate_id()?);
            batch.insert(key, encode(&chunk)?);
        }
    }
    Ok(tree.apply_batch(batch)?)
}

/// Drops attempts older than `older_than_ms`, and beyond the newest `keep_per_webhook` of
/// each webhook; a chunk that loses some of its attempts is rewritten.
pub(crate) fn prune(tree: &sled::Tree, older_than_ms: u64, keep_per_webhook: usize) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    let (mut current, mut kept) = (Vec::new(), 0usize);
    // Newest first within each webhook, so the count keeps the newest.
    for entry in tree.iter().rev() {
        let (key, raw) = entry?;
        if key.get(..16) != Some(current.as_slice()) {
            current = key.get(..16).unwrap_or_default().to_vec();
            kept = 0;
        }
        let mut chunk = decode_chunk(&raw)?;
        let before = chunk.len();
        // Oldest first within a chunk: walk it backwards for the count.
        let mut keep = vec![false; before];
        for (i, r) in chunk.iter().enumerate().rev() {
            if r.at_ms >= older_than_ms && kept < keep_per_webhook {
                keep[i] = true;
                kept += 1;
            }
        }
        let mut flags = keep.into_iter();
        chunk.retain(|_| flags.next().unwrap_or(false));
        if chunk.len() == before {
            continue;
        }
        if chunk.is_empty() {
            batch.remove(key);
        } else {
            batch.insert(key, encode(&chunk)?);
        }
        pending += 1;
        if pending == SLICE {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_one_attempt_values_of_earlier_builds() {
        let record = AttemptRecord {
            subscription_id: Uuid::now_v7(),
            event_id: "e1".into(),
            message_id: "msg_1".into(),
            attempt: 1,
            at_ms: 5,
            outcome: "delivered".into(),
            status: Some(200),
            latency_ms: 1,
            error_kind: None,
            error: None,
            response_excerpt: String::new(),
        };
        let single = encode(&record).expect("encode");
        assert_eq!(decode_chunk(&single).expect("decode"), std::slice::from_ref(&record));
        let chunk = encode(&[&record]).expect("encode");
        assert_eq!(decode_chunk(&chunk).expect("decode"), [record]);
    }
}
