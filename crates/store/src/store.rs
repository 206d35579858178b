//! The sled store and its one write path, [`Store::apply`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hookwire_core::{
    AsymmetricKey, CustomHeader, Ed25519Key, Filter, PublicKey, Secret, SigningKey, Subscription,
};
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use uuid::Uuid;

use crate::attempt_log;
use crate::dead_letters::Archive;
use crate::keys::{SEP, event_key, event_prefix, org_key, org_prefix};
use crate::payloads::{Payload, Payloads};
use crate::records::{
    AttemptQuery, AttemptRecord, DeadLetter, DeadLetterQuery, Page, decode, encode, is_zero,
};
use crate::sealing::Sealer;
use crate::subscriber_cache::{SubscriberCache, SubscriberList, position};
use crate::transaction::{APPLIED_OFFSET_KEY, Mark, transact_pair};
use crate::{Error, Result};

mod attempts;
mod health;
mod reads;
mod replicated;
mod retry;
mod schema;
mod secrets;
mod stream_guard;

use self::retry::StoredRetry;

pub use health::HealthTransition;
pub use replicated::{Entry, ReplicatedChange, Validate};
pub use stream_guard::StreamSession;

pub use schema::SCHEMA_VERSION;

/// A value sealed under the store's key, written at the first open: opening it proves
/// that `secrets.key` is the key the store's secrets were sealed with.
const CANARY_KEY: &[u8] = b"secrets_canary";
const CANARY_PLAINTEXT: &[u8] = b"hookwire secrets canary";

/// One mutation of the store. Every write goes through [`Store::apply`], so that the same
/// records can later be replicated through a changelog.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create or replace a subscription, whatever is stored: for creation. Its version is
    /// the stored one's plus one, or the given one for a new subscription.
    Upsert(Subscription),
    /// Create a new subscription unless its organization already has `max_per_org`
    /// ([`Error::LimitReached`]). Strict when every creation goes through the one
    /// [`Writer`](crate::Writer), which applies changes one at a time.
    Create {
        /// The new subscription.
        sub: Subscription,
        /// The most subscriptions its organization may have.
        max_per_org: usize,
    },
    /// Replace a subscription only if its stored version is still `expected_version`
    /// (decided inside the transaction), writing it as `expected_version + 1`. Fails with
    /// [`Error::Conflict`] when it changed meanwhile and [`Error::NotFound`] when it was
    /// deleted. The stored health counters are kept: the caller's copy of them may be stale.
    Replace {
        /// The new settings.
        sub: Subscription,
        /// The version the caller read.
        expected_version: u64,
    },
    /// Delete a subscription.
    Delete {
        /// Its organization.
        org: String,
        /// Its id.
        id: Uuid,
    },
    /// Record a delivery's result in its webhook's health, on the current record (never
    /// a stale copy, so a concurrent API update is kept).
    RecordHealth {
        /// Its organization.
        org: String,
        /// The webhook.
        id: Uuid,
        /// Whether the attempt delivered.
        delivered: bool,
        /// When (ms).
        at_ms: u64,
    },
    /// Append attempts to the attempt log (batched; never on the ack path).
    RecordAttempts(Vec<AttemptRecord>),
    /// Append the attempts of the attempts stream's batch at `offset`, and record the
    /// offset in the same sled batch; a batch at or before the last offset applied
    /// changes nothing.
    ApplyAttempts {
        /// The batch.
        records: Vec<AttemptRecord>,
        /// Its offset in the attempts stream.
        offset: u64,
    },
    /// Drop attempts older than a time, and beyond a count per webhook.
    PruneAttempts {
        /// Attempts before this time (ms) go.
        older_than_ms: u64,
        /// Each webhook keeps at most this many of its newest attempts.
        keep_per_webhook: usize,
    },
    /// Take the health other nodes shared (or this one, when not replicated): replicated,
    /// one entry for many webhooks ([`Store::take_health_transitions`]).
    ShareHealth(Vec<HealthTransition>),
    /// Archive a dead letter.
    ArchiveDeadLetter(DeadLetter),
    /// Remove dead letters (purged, or replayed).
    RemoveDeadLetters {
        /// Their organization; `None` for invalid events without one.
        org: Option<String>,
        /// Their ids.
        ids: Vec<Uuid>,
    },
    /// Keep event bodies for resending, once per (org, event id) (batched; never on the
    /// ack path).
    RecordPayloads(Vec<Payload>),
    /// Keep the event bodies of the payloads stream's batch at `offset`, and record the
    /// offset: the stream is read again after it.
    ApplyPayloads {
        /// The batch.
        payloads: Vec<Payload>,
        /// Its offset in the payloads stream.
        offset: u64,
    },
    /// Drop the event bodies received before a time, then the oldest of those over a
    /// byte budget.
    PrunePayloads {
        /// Bodies received before this time (ms) go.
        older_than_ms: u64,
        /// The most bytes of bodies kept in all (`store.payload_max_bytes`).
        max_bytes: u64,
        /// The most bytes of one organization's bodies (`store.payload_max_bytes_per_org`).
        max_bytes_per_org: u64,
    },
    /// Drop dead letters older than a time, and beyond a count per organization.
    PruneDeadLetters {
        /// Letters archived before this time (ms) go.
        older_than_ms: u64,
        /// Each organization (and the letters without one) keeps at most this many of
        /// its newest letters.
        keep_per_org: usize,
    },
}

/// The embedded store. Cloning is cheap: clones share one sled database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    /// `org ‖ 0 ‖ id` → record.
    subscriptions: sled::Tree,
    /// `org ‖ 0 ‖ event ‖ 0 ‖ id` → nothing: the delivery hot path's index.
    by_event: sled::Tree,
    /// The attempt log: its chunks, and their keys with the index by outcome
    /// ([`attempt_log`]).
    attempts: attempt_log::Log,
    /// Held by each prune of the attempt log: two at once could each rewrite one chunk
    /// under a new key, and keep its attempts twice.
    attempts_pruning: Arc<std::sync::Mutex<()>>,
    /// The dead letters and their bodies.
    dead: Archive,
    /// Event bodies kept for resending.
    payloads: Payloads,
    /// The offset of the last change applied from the changes stream.
    replication: sled::Tree,
    sealer: Sealer,
    subscribers: Arc<SubscriberCache>,
    /// Parsed filters and transforms by their source: a task's webhook is read for every attempt.
    filters: Arc<secrets::ParsedCache<Filter>>,
    transforms: Arc<secrets::ParsedCache<hookwire_core::Transform>>,
    /// Webhooks whose failing state flipped here, to share with the other nodes.
    flipped: Arc<health::FlippedHealth>,
    /// When the newest attempt the attempts stream brought here ended (ms).
    replicated_attempts: Arc<tokio::sync::watch::Sender<u64>>,
    /// The sled directory, for the [`Writer`](crate::Writer)'s `fsync`s.
    path: Arc<PathBuf>,
}

/// A webhook as stored and as the changes stream carries it. A field this build does not
/// know is refused, never dropped: a newer build's setting (a transform, a retry policy)
/// silently lost would make this node deliver otherwise than the others. An entry that
/// carries one stops this node's changes stream until it is upgraded
/// (docs/operations.md, "Upgrading hookwire").
///
/// A field at its default is left out, which every build reads back as that default: the
/// store holds about twice a record's bytes, since sled rewrites whole leaves and
/// reclaims a segment only once half of it is garbage (docs/architecture.md, "The store").
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    id: Uuid,
    org: String,
    url: String,
    description: String,
    events: Vec<String>,
    enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit_per_sec: Option<u32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failing_since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_success_ms: Option<u64>,
    keys: Vec<SealedKey>,
    created_at_ms: u64,
    updated_at_ms: u64,
    /// Absent in records written before versions existed: 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    version: u64,
    /// The Ed25519 keys; absent in records written before they existed: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ed25519_keys: Vec<SealedEd25519Key>,
    /// The custom headers; absent in records written before they existed: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<StoredHeader>,
    /// The payload filter's source; absent in records written before filters existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    /// The transform's source; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transform: Option<String>,
    /// The client certificate, its sealed key and the CA bundle; absent when none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_tls: Option<secrets::StoredClientTls>,
    /// The webhook's own retry policy; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<StoredRetry>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedKey {
    /// Base64 of `nonce ‖ ciphertext`.
    sealed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedEd25519Key {
    /// Base64 of the public key: shown without unsealing anything.
    public: String,
    /// Base64 of the sealed 32-byte seed.
    sealed: String,
    expires_at_ms: Option<u64>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredHeader {
    name: String,
    /// The value of a header that is not secret.
    #[serde(default)]
    value: Option<String>,
    /// Base64 of a secret header's sealed value.
    #[serde(default)]
    sealed: Option<String>,
}

impl Store {
    /// Opens (or creates) the store at `path`. Fails when another process holds it, when
    /// a newer hookwire wrote it, or when `secrets_key` is not the store's key.
    pub fn open(path: &Path, cache_capacity_bytes: u64, secrets_key: &[u8; 32]) -> Result<Self> {
        Self::open_with_keys(path, cache_capacity_bytes, secrets_key, &[])
    }

    /// [`Store::open`], with the keys of earlier rotations: secrets sealed under any of
    /// them still open, and every new seal uses `secrets_key`.
    pub fn open_with_keys(
        path: &Path,
        cache_capacity_bytes: u64,
        secrets_key: &[u8; 32],
        previous_keys: &[[u8; 32]],
    ) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .open()?;
        let upgrade_from = schema::check(&db)?;
        let store = Self {
            subscriptions: db.open_tree("subscriptions")?,
            by_event: db.open_tree("subscriptions_by_event")?,
            attempts: attempt_log::Log::open(&db)?,
            attempts_pruning: Arc::default(),
            dead: Archive::open(&db)?,
            payloads: Payloads::open(&db)?,
            replication: db.open_tree("replication")?,
            db,
            sealer: Sealer::new(secrets_key, previous_keys),
            subscribers: Arc::default(),
            filters: Arc::default(),
            transforms: Arc::default(),
            flipped: Arc::default(),
            replicated_attempts: Arc::new(tokio::sync::watch::Sender::new(0)),
            path: Arc::new(path.to_owned()),
        };
        store.check_key()?;
        if let Some(found) = upgrade_from {
            store.upgrade(found)?;
        }
        Ok(store)
    }

    /// Applies one change atomically. It is durable only after [`Store::flush`].
    pub fn apply(&self, change: Change) -> Result<()> {
        match change {
            Change::RecordHealth {
                org,
                id,
                delivered,
                at_ms,
            } => {
                if let Some(health) = self.record_health(&org, &id, delivered, at_ms)? {
                    self.subscribers
                        .patch(&org, &id, |sub| health.apply_to(sub));
                }
                Ok(())
            }
            Change::ShareHealth(transitions) => self.share_health(&transitions, None),
            Change::RecordAttempts(records) => {
                attempt_log::record(&self.attempts, &self.db, &records)
            }
            Change::ApplyAttempts { records, offset } => self.apply_attempts(&records, offset),
            Change::PruneAttempts {
                older_than_ms,
                keep_per_webhook,
            } => self.prune_attempts(older_than_ms, keep_per_webhook),
            Change::RecordPayloads(payloads) => self.payloads.insert(&self.db, &payloads, None),
            Change::ApplyPayloads { payloads, offset } => {
                self.payloads.insert(&self.db, &payloads, Some(offset))
            }
            Change::PrunePayloads {
                older_than_ms,
                max_bytes,
                max_bytes_per_org,
            } => {
                let removed = self.payloads.prune(older_than_ms)?;
                if removed > 0 {
                    tracing::info!(removed, "Event payloads past their retention removed.");
                }
                let evicted = self
                    .payloads
                    .enforce_budgets(max_bytes, max_bytes_per_org)?;
                for (budget, n) in [("org", evicted.per_org), ("total", evicted.total)] {
                    if n > 0 {
                        metrics::counter!("hookwire_payloads_evicted_total", "budget" => budget)
                            .increment(n as u64);
                        tracing::warn!(
                            evicted = n,
                            budget,
                            "Kept event bodies over their byte budget removed, oldest first: they can no longer be resent."
                        );
                    }
                }
                // After each prune (every minute): how full the archive stays.
                metrics::gauge!("hookwire_payload_archive_bytes")
                    .set(self.payloads.kept_bytes() as f64);
                metrics::gauge!("hookwire_payload_archive_max_bytes").set(max_bytes as f64);
                Ok(())
            }
            Change::ArchiveDeadLetter(d) => self.dead.insert(d, None),
            Change::RemoveDeadLetters { org, ids } => self.dead.remove(org.as_deref(), &ids, None),
            Change::PruneDeadLetters {
                older_than_ms,
                keep_per_org,
            } => {
                let removed = self.dead.prune(older_than_ms, keep_per_org)?;
                if removed > 0 {
                    tracing::info!(removed, "Dead letters past their retention removed.");
                }
                Ok(())
            }
            Change::Upsert(sub) => {
                self.write_subscription(&sub, None)?;
                self.subscribers.invalidate(&sub.org);
                Ok(())
            }
            Change::Create { sub, max_per_org } => {
                if self.count(&sub.org)? >= max_per_org {
                    return Err(Error::LimitReached {
                        org: sub.org,
                        max: max_per_org,
                    });
                }
                self.write_subscription(&sub, None)?;
                self.subscribers.invalidate(&sub.org);
                Ok(())
            }
            Change::Replace {
                sub,
                expected_version,
            } => {
                self.write_subscription(&sub, Some(expected_version))?;
                self.subscribers.invalidate(&sub.org);
                Ok(())
            }
            Change::Delete { org, id } => self.delete(&org, &id, None),
        }
    }

    /// Deletes a subscription and its index entries (with `mark`'s offset, when replicated).
    fn delete(&self, org: &str, id: &Uuid, mark: Option<Mark<'_>>) -> Result<()> {
        let key = org_key(org, id);
        // A record too damaged to name its events is found in the index by its id: a
        // transaction cannot scan, so the scan comes first.
        let orphans = match self.subscriptions.get(&key)? {
            Some(raw) if decode_events(&raw).is_err() => self.index_keys_of(org, id)?,
            _ => Vec::new(),
        };
        self.transact(mark, |subs, index| {
            let Some(old) = subs.remove(key.as_slice())? else {
                return Err(ConflictableTransactionError::Abort(Error::NotFound(*id)));
            };
            match decode_events(&old) {
                Ok(events) => {
                    for event in events {
                        index.remove(event_key(org, &event, id))?;
                    }
                }
                Err(_) => {
                    for orphan in &orphans {
                        index.remove(orphan.as_slice())?;
                    }
                }
            }
            Ok(())
        })?;
        self.subscribers.invalidate(org);
        Ok(())
    }

    /// Every index entry of `org`'s webhook `id`, whatever its event type.
    fn index_keys_of(&self, org: &str, id: &Uuid) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        for key in self.by_event.scan_prefix(org_prefix(org)).keys() {
            let key = key?;
            if key.ends_with(id.as_bytes()) {
                keys.push(key.to_vec());
            }
        }
        Ok(keys)
    }

    /// Writes `sub` and its index entries in one transaction; with `expected`, only if the
    /// stored version is that one (compare-and-swap).
    fn write_subscription(&self, sub: &Subscription, expected: Option<u64>) -> Result<()> {
        self.write_record(&self.seal(sub)?, expected, None)
    }

    /// [`Store::write_subscription`] of a record already sealed, with `mark`'s offset when
    /// it comes from the changes stream.
    fn write_record(
        &self,
        sub: &Record,
        expected: Option<u64>,
        mark: Option<Mark<'_>>,
    ) -> Result<()> {
        let key = org_key(&sub.org, &sub.id);
        self.transact(mark, |subs, index| {
            let old = subs.get(&key)?;
            let mut record = sub.clone();
            let current = old.as_deref().map(decode_header).transpose()?;
            match (expected, &current) {
                (Some(_), None) => {
                    return Err(ConflictableTransactionError::Abort(Error::NotFound(sub.id)));
                }
                (Some(expected), Some(current)) => {
                    if current.version != expected {
                        return Err(ConflictableTransactionError::Abort(Error::Conflict {
                            id: sub.id,
                            expected,
                            found: current.version,
                        }));
                    }
                    record.version = expected.wrapping_add(1);
                    record.consecutive_failures = current.consecutive_failures;
                    record.failing_since_ms = current.failing_since_ms;
                    record.last_success_ms = current.last_success_ms;
                }
                (None, Some(current)) => record.version = current.version.wrapping_add(1),
                (None, None) => {}
            }
            if let Some(current) = &current {
                for event in &current.events {
                    index.remove(event_key(&sub.org, event, &sub.id))?;
                }
            }
            for event in &sub.events {
                index.insert(event_key(&sub.org, event, &sub.id), &[])?;
            }
            let raw = encode(&record).map_err(ConflictableTransactionError::Abort)?;
            subs.insert(key.as_slice(), raw)?;
            Ok(())
        })
    }

    fn transact(
        &self,
        mark: Option<Mark<'_>>,
        f: impl Fn(
            &sled::transaction::TransactionalTree,
            &sled::transaction::TransactionalTree,
        ) -> Result<(), ConflictableTransactionError<Error>>,
    ) -> Result<()> {
        transact_pair(&self.subscriptions, &self.by_event, mark, f)
    }

    /// The sled directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes every applied change durable. Blocking: call it off the async workers.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// The id that ends `key`, after `prefix`.
fn id_after(key: &[u8], prefix: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(&key[prefix.len()..]).map_err(|e| Error::Corrupt(e.to_string()))
}

/// What a compare-and-swap reads of the stored record: its version, its index entries and
/// its health counters (kept across the write). Nothing sealed is opened.
#[derive(Deserialize)]
struct Header {
    events: Vec<String>,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    consecutive_failures: u32,
    #[serde(default)]
    failing_since_ms: Option<u64>,
    #[serde(default)]
    last_success_ms: Option<u64>,
}

fn decode_header(raw: &[u8]) -> Result<Header, ConflictableTransactionError<Error>> {
    serde_json::from_slice(raw)
        .map_err(|e| ConflictableTransactionError::Abort(Error::Corrupt(e.to_string())))
}

/// The event list of a stored record, for index maintenance inside a transaction.
fn decode_events(raw: &[u8]) -> Result<Vec<String>, ConflictableTransactionError<Error>> {
    #[derive(Deserialize)]
    struct Events {
        events: Vec<String>,
    }
    serde_json::from_slice::<Events>(raw)
        .map(|e| e.events)
        .map_err(|e| ConflictableTransactionError::Abort(Error::Corrupt(e.to_string())))
}
