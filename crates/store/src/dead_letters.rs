//! The dead-letter archive's layout. Letters are `org ‖ 0 ‖ id` → [`DeadLetter`] without
//! its body, with the empty org for invalid events that carry none. Ids are UUIDv7, so
//! each org's letters sort by the time they died, and the key alone tells a letter's age:
//! listing pages and retention both walk keys in order.
//!
//! Bodies live in a tree of their own, `id ‖ piece` → at most [`PIECE`] bytes. sled writes
//! a page over a quarter of a segment (128 KiB) to a blob file and charges its cache only
//! the pointer's size for it, so such pages are never evicted: with whole bodies in the
//! letters, serve's RSS grew with the archive past the cache bound. In pieces, a full leaf
//! stays small and the cache bound holds (docs/history.md, "Memory"). It also keeps the
//! pages that listing and retention walk small.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use uuid::Uuid;

use crate::keys::{org_key, org_prefix};
use crate::records::{DeadLetter, DeadLetterQuery, Page, decode, encode};
use crate::transaction::{Mark, transact_pair};
use crate::{Error, Result};

/// The largest piece of a body in one value.
const PIECE: usize = 4096;

/// A letter as stored: its body is in pieces. Letters written by earlier builds carry the
/// body inline and no pieces.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    letter: DeadLetter,
    #[serde(default)]
    body_pieces: u32,
}

fn prefix(org: Option<&str>) -> Vec<u8> {
    org_prefix(org.unwrap_or(""))
}

fn key(org: Option<&str>, id: &Uuid) -> Vec<u8> {
    org_key(org.unwrap_or(""), id)
}

fn piece_key(id: &Uuid, piece: u32) -> [u8; 20] {
    let mut key = [0; 20];
    key[..16].copy_from_slice(id.as_bytes());
    key[16..].copy_from_slice(&piece.to_be_bytes());
    key
}

/// The org part and id of a key.
fn split(key: &[u8]) -> Result<(&[u8], Uuid)> {
    let corrupt = || Error::Corrupt(format!("dead-letter key of {} bytes", key.len()));
    let at = key.len().checked_sub(17).ok_or_else(corrupt)?;
    let (org, rest) = key.split_at(at);
    let id = Uuid::from_slice(&rest[1..]).map_err(|_| corrupt())?;
    Ok((org, id))
}

/// When a letter was archived, from its UUIDv7 id (ms).
fn archived_at_ms(id: &Uuid) -> u64 {
    id.get_timestamp().map_or(0, |t| {
        let (secs, nanos) = t.to_unix();
        secs * 1000 + u64::from(nanos / 1_000_000)
    })
}

/// Removes one letter and its body inside a transaction; a missing letter is no error.
fn remove_key(
    letters: &TransactionalTree,
    bodies: &TransactionalTree,
    key: &[u8],
    id: &Uuid,
) -> Result<(), ConflictableTransactionError<Error>> {
    let Some(raw) = letters.remove(key)? else {
        return Ok(());
    };
    let stored: Stored = decode(&raw).map_err(ConflictableTransactionError::Abort)?;
    for i in 0..stored.body_pieces {
        bodies.remove(&piece_key(id, i))?;
    }
    Ok(())
}

/// The letters and their bodies.
#[derive(Debug, Clone)]
pub(crate) struct Archive {
    letters: sled::Tree,
    bodies: sled::Tree,
}

impl Archive {
    pub(crate) fn open(db: &sled::Db) -> Result<Self> {
        Ok(Self {
            letters: db.open_tree("dead_letters")?,
            bodies: db.open_tree("dead_letter_bodies")?,
        })
    }

    /// Stores a letter and its body at once (with `mark`'s offset, when replicated).
    pub(crate) fn insert(&self, mut letter: DeadLetter, mark: Option<Mark<'_>>) -> Result<()> {
        let body = std::mem::take(&mut letter.body);
        let id = letter.id;
        let key = key(letter.org.as_deref(), &id);
        let pieces: Vec<&[u8]> = body.chunks(PIECE).collect();
        let stored = encode(&Stored {
            letter,
            body_pieces: u32::try_from(pieces.len())
                .map_err(|_| Error::Corrupt("a dead letter body over 16 TiB".into()))?,
        })?;
        self.transact(mark, |letters, bodies| {
            for (i, piece) in (0u32..).zip(&pieces) {
                bodies.insert(&piece_key(&id, i), *piece)?;
            }
            letters.insert(key.as_slice(), stored.as_slice())?;
            Ok(())
        })
    }

    /// Removes `org`'s letters with these ids, and their bodies; with `mark`, all at once
    /// with its offset.
    pub(crate) fn remove(
        &self,
        org: Option<&str>,
        ids: &[Uuid],
        mark: Option<Mark<'_>>,
    ) -> Result<()> {
        if mark.is_some() {
            return self.transact(mark, |letters, bodies| {
                ids.iter()
                    .try_for_each(|id| remove_key(letters, bodies, &key(org, id), id))
            });
        }
        for id in ids {
            self.transact(None, |letters, bodies| {
                remove_key(letters, bodies, &key(org, id), id)
            })?;
        }
        Ok(())
    }

    fn transact(
        &self,
        mark: Option<Mark<'_>>,
        f: impl Fn(
            &TransactionalTree,
            &TransactionalTree,
        ) -> Result<(), ConflictableTransactionError<Error>>,
    ) -> Result<()> {
        transact_pair(&self.letters, &self.bodies, mark, f)
    }

    /// A stored letter with its body.
    fn read(&self, raw: &[u8]) -> Result<DeadLetter> {
        let (mut letter, body_pieces) = Self::read_record(raw)?;
        self.read_body(&mut letter, body_pieces)?;
        Ok(letter)
    }

    /// A stored letter without its body: the record only. A letter of an earlier build,
    /// whose body is inline, loses it here.
    fn read_record(raw: &[u8]) -> Result<(DeadLetter, u32)> {
        let Stored {
            mut letter,
            body_pieces,
        } = decode(raw)?;
        if letter.body_bytes == 0 {
            letter.body_bytes = letter.body.len() as u64;
        }
        Ok((letter, body_pieces))
    }

    fn read_body(&self, letter: &mut DeadLetter, body_pieces: u32) -> Result<()> {
        if body_pieces > 0 {
            for piece in self.bodies.scan_prefix(letter.id.as_bytes()) {
                letter.body.extend_from_slice(&piece?.1);
            }
        }
        Ok(())
    }

    /// One letter of `org`, with its body.
    pub(crate) fn get(&self, org: Option<&str>, id: &Uuid) -> Result<Option<DeadLetter>> {
        self.letters
            .get(key(org, id))?
            .map(|raw| self.read(&raw))
            .transpose()
    }

    /// Every letter, oldest first per org.
    pub(crate) fn all(&self) -> Result<Vec<DeadLetter>> {
        self.letters
            .iter()
            .map(|entry| self.read(&entry?.1))
            .collect()
    }

    /// Every letter with its body, oldest first per org, read as the archive changes: a
    /// letter removed while it is read (its body gone, or partly) is left out rather than
    /// yielded without its body. Each letter is held alone, never the archive.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Result<DeadLetter>> + '_ {
        self.letters.iter().filter_map(move |entry| {
            let read = || -> Result<Option<DeadLetter>> {
                let (mut letter, body_pieces) = Self::read_record(&entry?.1)?;
                if body_pieces == 0 {
                    return Ok(Some(letter));
                }
                let mut found = 0u32;
                for piece in self.bodies.scan_prefix(letter.id.as_bytes()) {
                    letter.body.extend_from_slice(&piece?.1);
                    found += 1;
                }
                // Pieces are written and removed in one transaction with their letter.
                Ok((found == body_pieces).then_some(letter))
            };
            read().transpose()
        })
    }

    /// One page of `org`'s letters that match, oldest first, after `query.after`.
    pub(crate) fn page(
        &self,
        org: Option<&str>,
        query: &DeadLetterQuery,
    ) -> Result<Page<DeadLetter>> {
        let prefix = prefix(org);
        let start = match &query.cursor {
            // A cursor is the id of the previous page's last letter: the range starts just
            // after its key.
            Some(cursor) => {
                let id =
                    Uuid::parse_str(cursor).map_err(|_| Error::InvalidCursor(cursor.clone()))?;
                let mut start = key(org, &id);
                start.push(0);
                start
            }
            None => prefix.clone(),
        };
        let limit = query.limit.max(1);
        let mut items = Vec::new();
        for entry in self.letters.range(start..) {
            let (key, raw) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            let (mut letter, body_pieces) = Self::read_record(&raw)?;
            if !query.matches(&letter) {
                continue;
            }
            if query.bodies {
                self.read_body(&mut letter, body_pieces)?;
            } else {
                letter.body = Vec::new();
            }
            if items.len() == limit {
                let last: &DeadLetter = items.last().expect("limit is at least 1");
                let next_cursor = Some(last.id.to_string());
                return Ok(Page { items, next_cursor });
            }
            items.push(letter);
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// Removes the letters archived before `older_than_ms`, and each org's oldest beyond
    /// `keep_per_org`. Judged from the keys alone. Returns how many went.
    pub(crate) fn prune(&self, older_than_ms: u64, keep_per_org: usize) -> Result<usize> {
        let mut doomed = Vec::new();
        // One org's keys at a time: they are contiguous and oldest first.
        let mut org = Vec::new();
        let mut org_keys: Vec<(sled::IVec, u64)> = Vec::new();
        let mut judge = |keys: &mut Vec<(sled::IVec, u64)>| {
            let excess = keys.len().saturating_sub(keep_per_org);
            let old = keys
                .iter()
                .take_while(|(_, at)| *at < older_than_ms)
                .count();
            doomed.extend(keys.drain(..).take(excess.max(old)).map(|(k, _)| k));
        };
        for key in self.letters.iter().keys() {
            let key = key?;
            let (key_org, id) = split(&key)?;
            if key_org != org.as_slice() {
                judge(&mut org_keys);
                org = key_org.to_vec();
            }
            let at = archived_at_ms(&id);
            org_keys.push((key, at));
        }
        judge(&mut org_keys);
        for key in &doomed {
            let id = split(key)?.1;
            self.transact(None, |letters, bodies| {
                remove_key(letters, bodies, key, &id)
            })?;
        }
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Archive {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        Archive::open(&db).expect("archive")
    }

    fn letter(org: Option<&str>, body: Vec<u8>) -> DeadLetter {
        DeadLetter {
            id: Uuid::now_v7(),
            org: org.map(str::to_owned),
            subscription_id: None,
            event_id: Some("e1".into()),
            event_type: Some("report_created".into()),
            reason: "too_large".into(),
            detail: "over 64 KiB".into(),
            attempts: 0,
            dead_at_ms: 1,
            body_bytes: body.len() as u64,
            body,
            truncated: false,
            traceparent: None,
            tracestate: None,
            transformed: None,
        }
    }

    #[test]
    fn bodies_are_kept_in_pieces_and_go_with_their_letter() {
        let a = archive();
        let big: Vec<u8> = (0..70 * 1024 + 5).map(|i| (i % 251) as u8).collect();
        let (large, empty) = (letter(Some("acme"), big), letter(None, Vec::new()));
        a.insert(large.clone(), None).expect("insert");
        a.insert(empty.clone(), None).expect("insert");
        assert_eq!(a.bodies.len(), 18, "70 KiB in 4 KiB pieces");
        assert!(
            a.letters
                .iter()
                .values()
                .all(|v| v.expect("value").len() < 1024)
        );
        // Not assert_eq: a failure would print 70 KiB of body.
        let all = a.all().expect("all");
        assert!(
            all == [empty, large.clone()],
            "letters without an org sort first"
        );

        a.remove(Some("acme"), &[large.id], None).expect("remove");
        assert!(a.bodies.is_empty(), "the pieces went with the letter");
        a.insert(large, None).expect("insert");
        assert_eq!(a.prune(u64::MAX, 10).expect("prune"), 2);
        assert!(a.letters.is_empty() && a.bodies.is_empty());
    }

    #[test]
    fn letters_of_earlier_builds_keep_their_body_inline() {
        let a = archive();
        let old = letter(Some("acme"), b"{\"event\":1}".to_vec());
        let raw = encode(&old).expect("encode");
        a.letters
            .insert(key(Some("acme"), &old.id), raw)
            .expect("insert");
        let page = a
            .page(Some("acme"), &DeadLetterQuery::default())
            .expect("page");
        assert_eq!(page.items, std::slice::from_ref(&old));
        a.remove(Some("acme"), &[old.id], None).expect("remove");
        assert!(a.letters.is_empty());
    }

    #[test]
    fn keys_split_back_into_org_and_id() {
        let id = Uuid::now_v7();
        for org in [Some("acme"), None] {
            let key = key(org, &id);
            let (o, i) = split(&key).expect("split");
            assert_eq!(o, org.unwrap_or("").as_bytes());
            assert_eq!(i, id);
        }
        assert!(split(b"short").is_err());
    }

    #[test]
    fn the_archive_time_is_read_from_the_id() {
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 123_000_000);
        assert_eq!(archived_at_ms(&Uuid::new_v7(ts)), 1_700_000_000_123);
    }
}
