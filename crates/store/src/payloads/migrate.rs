//! The layout before [`TREE`]: a record, body, time-index and age-index tree, migrated
//! into the archive's one tree when a store is opened.

use serde::Deserialize;

use super::*;

/// The old layout's trees.
const OLD_TREES: [&str; 4] = [
    "payloads",
    "payload_bodies",
    "payloads_by_time",
    "payloads_by_age",
];

/// What the layout before [`TREE`] kept per event, besides its body.
#[derive(Deserialize)]
struct OldMeta {
    event_type: String,
    received_at_ms: u64,
    #[serde(default)]
    published_at_ms: Option<u64>,
    seq: u64,
    body_bytes: usize,
}

impl Payloads {
    /// Moves the events kept in the old layout's trees into [`TREE`], then drops those
    /// trees. Idempotent: an interrupted migration is finished at the next open (events
    /// moved already are refused as duplicates).
    pub(super) fn migrate(&self, db: &sled::Db) -> Result<()> {
        let records = db.open_tree(OLD_TREES[0])?;
        let bodies = db.open_tree(OLD_TREES[1])?;
        let mut batch = Vec::new();
        let mut moved = 0usize;
        for entry in records.iter() {
            let (key, raw) = entry?;
            if key.as_ref() == APPLIED_KEY {
                let offset = <[u8; 8]>::try_from(raw.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::Corrupt("payloads offset".into()))?;
                self.record_offset(offset)?;
                continue;
            }
            let Some(sep) = key.iter().position(|b| *b == SEP) else {
                continue;
            };
            let meta: OldMeta = decode(&raw)?;
            let mut body = Vec::with_capacity(meta.body_bytes);
            for i in 0..meta.body_bytes.div_ceil(PIECE) {
                let mut piece = [0; 12];
                piece[..8].copy_from_slice(&meta.seq.to_be_bytes());
                piece[8..].copy_from_slice(&(i as u32).to_be_bytes());
                match bodies.get(piece)? {
                    Some(p) => body.extend_from_slice(&p),
                    None => break,
                }
            }
            // A record whose body was not all written (a crash) cannot be resent.
            if body.len() != meta.body_bytes {
                continue;
            }
            batch.push(Payload {
                org: String::from_utf8_lossy(&key[..sep]).into_owned(),
                event_id: String::from_utf8_lossy(&key[sep + 1..]).into_owned(),
                event_type: meta.event_type,
                received_at_ms: meta.received_at_ms,
                published_at_ms: meta.published_at_ms,
                body_bytes: meta.body_bytes,
                body,
            });
            if batch.len() == 512 {
                moved += batch.len();
                self.insert(db, &std::mem::take(&mut batch), None)?;
            }
        }
        moved += batch.len();
        self.insert(db, &batch, None)?;
        for name in OLD_TREES {
            db.drop_tree(name)?;
        }
        tracing::info!(
            moved,
            "Kept event bodies moved to the store's new payload layout."
        );
        Ok(())
    }
}
