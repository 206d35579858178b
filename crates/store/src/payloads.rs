//! The payload archive: each event's body, kept once per (org, event id) however many
//! webhooks it fans out to, for resending. Four trees:
//!
//! - `payloads`: `org ‖ 0 ‖ event id` → [`Meta`] (event type, time, sequence, size);
//! - `payload_bodies`: `seq ‖ piece` → at most [`PIECE`] bytes of the body, in pieces for
//!   the reason the dead-letter archive keeps its bodies in pieces (sled's cache bound);
//! - `payloads_by_time`: `org ‖ 0 ‖ time ‖ seq` → event id: an organization's events in
//!   the order hookwire received them, for "resend everything between T1 and T2";
//! - `payloads_by_age`: `time ‖ seq` → `org ‖ 0 ‖ event id`: every event oldest first,
//!   so that pruning by age reads only what it removes.
//!
//! A payload is written tree by tree (bodies first, age index last) without a
//! transaction: a crash between two of them leaves entries that readers skip (an index
//! entry without its record) or that pruning removes with the rest (records are found
//! through the age index, written last, so a record without it is never pruned: its
//! next copy, when the event is consumed again, is refused as a duplicate). A missing
//! payload only means an event that cannot be resent; none of this gates a delivery.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::keys::{SEP, org_prefix};
use crate::records::{Page, decode, encode};
use crate::{Error, Result};

/// Where the offset of the last batch applied from the payloads stream is kept: no
/// record key starts with 0xff (an organization is ASCII).
const APPLIED_KEY: &[u8] = b"\xffapplied_offset";
/// The largest piece of a body in one value.
const PIECE: usize = 4096;
/// Removals go to sled in slices, as the attempt log's do.
const SLICE: usize = 1000;

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

/// What `payloads` holds for one event.
#[derive(Serialize, Deserialize)]
struct Meta {
    event_type: String,
    received_at_ms: u64,
    #[serde(default)]
    published_at_ms: Option<u64>,
    seq: u64,
    body_bytes: usize,
}

/// The trees of the archive.
#[derive(Debug, Clone)]
pub(crate) struct Payloads {
    records: sled::Tree,
    bodies: sled::Tree,
    by_time: sled::Tree,
    by_age: sled::Tree,
}

fn record_key(org: &str, event_id: &str) -> Vec<u8> {
    let mut key = org_prefix(org);
    key.extend_from_slice(event_id.as_bytes());
    key
}

fn piece_key(seq: u64, piece: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&seq.to_be_bytes());
    key[8..].copy_from_slice(&piece.to_be_bytes());
    key
}

fn time_key(org: &str, at_ms: u64, seq: u64) -> Vec<u8> {
    let mut key = org_prefix(org);
    key.extend_from_slice(&at_ms.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn age_key(at_ms: u64, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&at_ms.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
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

impl Payloads {
    pub(crate) fn open(db: &sled::Db) -> Result<Self> {
        Ok(Self {
            records: db.open_tree("payloads")?,
            bodies: db.open_tree("payload_bodies")?,
            by_time: db.open_tree("payloads_by_time")?,
            by_age: db.open_tree("payloads_by_age")?,
        })
    }

    /// Keeps each payload unless its (org, event id) is kept already: a redelivered event,
    /// or one that several batches carry, is stored once.
    pub(crate) fn insert(&self, db: &sled::Db, payloads: &[Payload]) -> Result<()> {
        let (mut records, mut bodies, mut by_time, mut by_age) = (
            sled::Batch::default(),
            sled::Batch::default(),
            sled::Batch::default(),
            sled::Batch::default(),
        );
        let mut seen = HashSet::new();
        for p in payloads {
            let key = record_key(&p.org, &p.event_id);
            if !seen.insert(key.clone()) || self.records.contains_key(&key)? {
                continue;
            }
            let seq = db.generate_id()?;
            for (i, piece) in p.body.chunks(PIECE).enumerate() {
                bodies.insert(&piece_key(seq, i as u32), piece);
            }
            let meta = Meta {
                event_type: p.event_type.clone(),
                received_at_ms: p.received_at_ms,
                published_at_ms: p.published_at_ms,
                seq,
                body_bytes: p.body.len(),
            };
            records.insert(key.as_slice(), encode(&meta)?);
            by_time.insert(
                time_key(&p.org, p.received_at_ms, seq),
                p.event_id.as_bytes(),
            );
            by_age.insert(&age_key(p.received_at_ms, seq), key);
        }
        self.bodies.apply_batch(bodies)?;
        self.records.apply_batch(records)?;
        self.by_time.apply_batch(by_time)?;
        self.by_age.apply_batch(by_age)?;
        Ok(())
    }

    /// Removes every payload received before `older_than_ms`; returns how many.
    pub(crate) fn prune(&self, older_than_ms: u64) -> Result<usize> {
        let mut removed = 0;
        loop {
            let old: Vec<(sled::IVec, sled::IVec)> = self
                .by_age
                .range(..age_key(older_than_ms, 0))
                .take(SLICE)
                .collect::<std::result::Result<_, _>>()?;
            if old.is_empty() {
                return Ok(removed);
            }
            let (mut records, mut bodies, mut by_time, mut by_age) = (
                sled::Batch::default(),
                sled::Batch::default(),
                sled::Batch::default(),
                sled::Batch::default(),
            );
            for (age, record) in &old {
                by_age.remove(age);
                let org = record.split(|b| *b == SEP).next().unwrap_or_default();
                let (at, seq) = age.split_at(8);
                let mut time = org.to_vec();
                time.push(SEP);
                time.extend_from_slice(at);
                time.extend_from_slice(seq);
                by_time.remove(time);
                let Some(raw) = self.records.get(record)? else {
                    continue;
                };
                let meta: Meta = decode(&raw)?;
                // A record re-kept under a newer sequence is not this entry's to remove.
                if meta.seq.to_be_bytes() != seq {
                    continue;
                }
                records.remove(record);
                for i in 0..meta.body_bytes.div_ceil(PIECE) {
                    bodies.remove(&piece_key(meta.seq, i as u32));
                }
                removed += 1;
            }
            self.records.apply_batch(records)?;
            self.by_time.apply_batch(by_time)?;
            self.bodies.apply_batch(bodies)?;
            self.by_age.apply_batch(by_age)?;
        }
    }

    /// One event's payload, with its body.
    pub(crate) fn get(&self, org: &str, event_id: &str) -> Result<Option<Payload>> {
        let Some(raw) = self.records.get(record_key(org, event_id))? else {
            return Ok(None);
        };
        let meta: Meta = decode(&raw)?;
        let mut body = Vec::with_capacity(meta.body_bytes);
        for i in 0..meta.body_bytes.div_ceil(PIECE) {
            let piece = self
                .bodies
                .get(piece_key(meta.seq, i as u32))?
                .ok_or_else(|| Error::Corrupt(format!("payload of `{event_id}` lacks a piece")))?;
            body.extend_from_slice(&piece);
        }
        if body.len() != meta.body_bytes {
            return Err(Error::Corrupt(format!(
                "payload of `{event_id}` has {} bytes, not {}",
                body.len(),
                meta.body_bytes
            )));
        }
        Ok(Some(Payload {
            org: org.to_owned(),
            event_id: event_id.to_owned(),
            event_type: meta.event_type,
            received_at_ms: meta.received_at_ms,
            published_at_ms: meta.published_at_ms,
            body,
            body_bytes: meta.body_bytes,
        }))
    }

    /// `org`'s payloads received in `[from_ms, to_ms)`, oldest first, without bodies, at
    /// most `limit`, after `cursor` (the previous page's `next_cursor`).
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
        let start = match cursor {
            None => time_key(org, from_ms, 0),
            Some(c) => {
                let mut key = unhex(c).ok_or_else(|| invalid(c))?;
                if !key.starts_with(&prefix) || key.len() != prefix.len() + 16 {
                    return Err(invalid(c));
                }
                // Just past the cursor's own entry.
                key.push(0);
                key
            }
        };
        let end = time_key(org, to_ms, 0);
        let limit = limit.max(1);
        let mut items = Vec::new();
        let mut next_cursor = None;
        for entry in self.by_time.range(start..end) {
            let (key, event_id) = entry?;
            if items.len() == limit {
                next_cursor = items.last().map(|(k, _): &(sled::IVec, Payload)| hex(k));
                break;
            }
            let event_id = String::from_utf8_lossy(&event_id).into_owned();
            let Some(raw) = self.records.get(record_key(org, &event_id))? else {
                continue;
            };
            let meta: Meta = decode(&raw)?;
            items.push((
                key,
                Payload {
                    org: org.to_owned(),
                    event_id,
                    event_type: meta.event_type,
                    received_at_ms: meta.received_at_ms,
                    published_at_ms: meta.published_at_ms,
                    body: Vec::new(),
                    body_bytes: meta.body_bytes,
                },
            ));
        }
        Ok(Page {
            items: items.into_iter().map(|(_, p)| p).collect(),
            next_cursor,
        })
    }

    /// The offset of the last batch applied from the payloads stream.
    pub(crate) fn applied_offset(&self) -> Result<Option<u64>> {
        self.records
            .get(APPLIED_KEY)?
            .map(|raw| {
                <[u8; 8]>::try_from(raw.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::Corrupt("payloads offset".into()))
            })
            .transpose()
    }

    /// Records `offset` as the last batch applied from the payloads stream.
    pub(crate) fn record_offset(&self, offset: u64) -> Result<()> {
        self.records.insert(APPLIED_KEY, &offset.to_be_bytes())?;
        Ok(())
    }

    /// How many payloads are kept, and their bodies' bytes.
    pub(crate) fn stats(&self) -> Result<(usize, u64)> {
        let (mut count, mut bytes) = (0, 0u64);
        for entry in self.records.iter() {
            let (key, raw) = entry?;
            if key.as_ref() == APPLIED_KEY {
                continue;
            }
            let meta: Meta = decode(&raw)?;
            count += 1;
            bytes += meta.body_bytes as u64;
        }
        Ok((count, bytes))
    }
}
