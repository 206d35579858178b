//! The store's schema version, and the upgrade of a store an earlier build wrote.

use super::*;

/// The schema this build writes. Bump it with every incompatible record change, and
/// upgrade what an earlier one wrote in [`Store::upgrade`].
///
/// 2: the attempt log's keys in a tree of their own with its index by outcome, and
/// chunks of at most 10 s of attempts.
/// 3: each organization's kept event bodies counted in the payload archive, written with
/// every change to them (an earlier build would change the archive without them).
pub const SCHEMA_VERSION: u32 = 3;

const SCHEMA_KEY: &[u8] = b"schema_version";

/// Refuses a store written by a newer hookwire, and marks a new one as this build's;
/// the version of one that [`Store::upgrade`] must bring up to date.
pub(super) fn check(db: &sled::Db) -> Result<Option<u32>> {
    match db.get(SCHEMA_KEY)? {
        None => {
            db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            Ok(None)
        }
        Some(raw) => {
            let found = <[u8; 4]>::try_from(raw.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| Error::Corrupt("schema version".into()))?;
            if found > SCHEMA_VERSION {
                return Err(Error::SchemaTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Ok((found < SCHEMA_VERSION).then_some(found))
        }
    }
}

impl Store {
    /// Brings a store written by an earlier build (schema `found`) up to this one, then
    /// records the version: an upgrade that a crash interrupts runs again at the next open.
    pub(super) fn upgrade(&self, found: u32) -> Result<()> {
        if found < 2 {
            let started = std::time::Instant::now();
            let chunks = attempt_log::rebuild_keys(&self.attempts)?;
            tracing::info!(
                chunks,
                secs = started.elapsed().as_secs_f64(),
                "The attempt log's key tree and index by outcome were built (store schema 1 to 2)."
            );
        }
        if found < 3 {
            let started = std::time::Instant::now();
            let counted = self.payloads.rebuild_usage()?;
            tracing::info!(
                orgs = counted.len(),
                events = counted.values().map(|k| k.events).sum::<u64>(),
                bytes = counted.values().map(|k| k.bytes).sum::<u64>(),
                secs = started.elapsed().as_secs_f64(),
                "The payload archive's counts per organization were built (store schema 2 to 3)."
            );
        }
        self.db.flush()?;
        self.db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }
}
