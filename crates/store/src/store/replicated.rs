//! The store's side of replication: a [`Change`] sealed into an [`Entry`] of the changes
//! stream by the node that writes it, and entries applied, by every node, together with
//! their offset in the stream.
//!
//! Applying is deterministic: ids, times and sealed secrets are all in the entry, decided
//! by the writer, and a compare-and-swap is decided against the store as the stream's
//! order left it, so every node that applies the same entries reaches the same state.

use super::*;

/// One change as it travels the changes stream. Like the webhook record, it refuses
/// fields this build does not know.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Unique: the node that wrote it waits until it has applied it.
    pub id: Uuid,
    /// The node that wrote it.
    pub node: String,
    /// When it was written (ms, the writer's clock).
    pub at_ms: u64,
    /// The import it belongs to (`hookwire store import`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Uuid>,
    /// What it changes.
    change: Replicated,
}

/// Checks the webhook an entry writes against the one it replaces on this node (`None`
/// for a new one), as the API checks a request: `Err` says why the API would refuse it.
/// Handed `Err` with the reason when the entry's record cannot be opened (a filter that
/// does not parse, a secret that does not unseal), which it refuses too.
pub type Validate = Arc<
    dyn Fn(Result<&Subscription, String>, Option<&Subscription>) -> Result<(), String>
        + Send
        + Sync,
>;

/// Where the id of the import that seeded the namespace is kept.
const SEED_KEY: &[u8] = b"seed";
/// Set once any change other than an import's has been applied.
const WRITTEN_KEY: &[u8] = b"written";

/// What an entry changes. Subscriptions travel as the store's own sealed records, so that
/// every field of a record is replicated, and no secret leaves a node unsealed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Replicated {
    Create {
        webhook: Record,
        max_per_org: usize,
    },
    Replace {
        webhook: Record,
        expected_version: u64,
    },
    Upsert {
        webhook: Record,
    },
    Delete {
        org: String,
        id: Uuid,
    },
    ArchiveDeadLetter {
        letter: DeadLetter,
    },
    RemoveDeadLetters {
        org: Option<String>,
        ids: Vec<Uuid>,
    },
    /// Health transitions of a node's webhooks (never a write per delivery).
    ShareHealth {
        transitions: Vec<HealthTransition>,
    },
    /// Changes nothing: a node that has applied its own mark has caught up with the
    /// stream as it was when the mark was written.
    Mark,
}

/// A change sealed for the changes stream, or a change that stays on its node.
#[derive(Debug)]
pub enum ReplicatedChange {
    /// Goes through the stream.
    Replicated(Entry),
    /// Per node: each attempt's health, the attempt log, pruning by age.
    Local(Change),
}

impl Entry {
    /// A mark written by `node` ([`Store::apply_entry`] changes nothing but the offset).
    pub fn mark(node: &str) -> Self {
        Self::new(node, Replicated::Mark)
    }

    fn new(node: &str, change: Replicated) -> Self {
        Self {
            id: Uuid::now_v7(),
            node: node.to_owned(),
            at_ms: hookwire_core::now_ms(),
            seed: None,
            change,
        }
    }

    /// Whether it changes nothing (a node's mark).
    pub fn is_mark(&self) -> bool {
        matches!(self.change, Replicated::Mark)
    }

    /// The entry as the stream carries it.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    /// An entry read from the stream.
    pub fn from_bytes(raw: &[u8]) -> Result<Self> {
        decode(raw)
    }

    /// What it does, for logs.
    pub fn kind(&self) -> &'static str {
        match self.change {
            Replicated::Create { .. } => "create",
            Replicated::Replace { .. } => "replace",
            Replicated::Upsert { .. } => "upsert",
            Replicated::Delete { .. } => "delete",
            Replicated::ArchiveDeadLetter { .. } => "archive_dead_letter",
            Replicated::RemoveDeadLetters { .. } => "remove_dead_letters",
            Replicated::ShareHealth { .. } => "share_health",
            Replicated::Mark => "mark",
        }
    }
}

impl std::fmt::Debug for Entry {
    /// Never the records: they carry sealed secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("node", &self.node)
            .field("at_ms", &self.at_ms)
            .field("kind", &self.kind())
            .finish()
    }
}

impl Store {
    /// `change` as an entry of the changes stream written by `node`, its secrets sealed
    /// here; or the change itself when it stays on this node.
    pub fn replicated(&self, change: Change, node: &str) -> Result<ReplicatedChange> {
        let replicated = match change {
            Change::Create { sub, max_per_org } => Replicated::Create {
                webhook: self.seal(&sub)?,
                max_per_org,
            },
            Change::Replace {
                sub,
                expected_version,
            } => Replicated::Replace {
                webhook: self.seal(&sub)?,
                expected_version,
            },
            Change::Upsert(sub) => Replicated::Upsert {
                webhook: self.seal(&sub)?,
            },
            Change::Delete { org, id } => Replicated::Delete { org, id },
            Change::ArchiveDeadLetter(letter) => Replicated::ArchiveDeadLetter { letter },
            Change::RemoveDeadLetters { org, ids } => Replicated::RemoveDeadLetters { org, ids },
            Change::ShareHealth(transitions) => Replicated::ShareHealth { transitions },
            local @ (Change::RecordHealth { .. }
            | Change::RecordAttempts(_)
            | Change::ApplyAttempts { .. }
            | Change::PruneAttempts { .. }
            | Change::PruneDeadLetters { .. }
            | Change::RecordPayloads(_)
            | Change::ApplyPayloads { .. }
            | Change::PrunePayloads { .. }) => return Ok(ReplicatedChange::Local(local)),
        };
        Ok(ReplicatedChange::Replicated(Entry::new(node, replicated)))
    }

    /// Applies the entry at `offset` of the changes stream, and records the offset in the
    /// same transaction. A change refused for its input ([`Error::is_decided`]: a conflict,
    /// a missing webhook, a limit) is refused alike on every node: its offset is recorded
    /// all the same, and the refusal returned.
    /// An entry at or before the offset applied last was applied already (a reader that
    /// reconnected reads again what its predecessor handed over): it changes nothing.
    pub fn apply_entry(&self, entry: &Entry, offset: u64) -> Result<()> {
        self.apply_entry_validated(entry, offset, None)
    }

    /// [`Store::apply_entry`], the entry's webhook checked by `validate` first: one it
    /// refuses is refused like any decided change ([`Error::Refused`]), its offset
    /// recorded, nothing changed.
    pub fn apply_entry_validated(
        &self,
        entry: &Entry,
        offset: u64,
        validate: Option<&Validate>,
    ) -> Result<()> {
        if self
            .applied_offset()?
            .is_some_and(|applied| applied >= offset)
        {
            return Ok(());
        }
        if let Some(validate) = validate
            && let Err(why) = self.validate_entry(entry, validate)
        {
            self.record_offset(offset)?;
            return Err(Error::Refused(why));
        }
        if let Err(e) = self.admit_seed(entry) {
            self.record_offset(offset)?;
            return Err(e);
        }
        let mark = Mark {
            tree: &self.replication,
            offset,
        };
        match self.apply_change(entry, Some(mark)) {
            Err(e) if e.is_decided() => {
                self.record_offset(offset)?;
                Err(e)
            }
            other => other,
        }
    }

    /// What `entry` changes, with `mark`'s offset in the same transaction when it comes
    /// from the changes stream: the one apply of an entry, for the stream's reader and for
    /// `hookwire store restore` alike.
    fn apply_change(&self, entry: &Entry, mark: Option<Mark<'_>>) -> Result<()> {
        let applied = match &entry.change {
            Replicated::Create {
                webhook,
                max_per_org,
            } => {
                if self.count(&webhook.org)? >= *max_per_org {
                    Err(Error::LimitReached {
                        org: webhook.org.clone(),
                        max: *max_per_org,
                    })
                } else {
                    self.write_record(webhook, None, mark)
                }
            }
            Replicated::Replace {
                webhook,
                expected_version,
            } => self.write_record(webhook, Some(*expected_version), mark),
            Replicated::Upsert { webhook } => self.write_record(webhook, None, mark),
            Replicated::Delete { org, id } => self.delete(org, id, mark),
            Replicated::ArchiveDeadLetter { letter } => self.dead.insert(letter.clone(), mark),
            Replicated::RemoveDeadLetters { org, ids } => {
                self.dead.remove(org.as_deref(), ids, mark)
            }
            Replicated::ShareHealth { transitions } => self.share_health(transitions, mark),
            Replicated::Mark => mark.map_or(Ok(()), |mark| self.record_offset(mark.offset)),
        };
        match &entry.change {
            Replicated::Create { webhook, .. }
            | Replicated::Replace { webhook, .. }
            | Replicated::Upsert { webhook } => self.subscribers.invalidate(&webhook.org),
            _ => {}
        }
        applied
    }

    /// `validate` on the webhook `entry` writes, if any, against this node's current one.
    fn validate_entry(&self, entry: &Entry, validate: &Validate) -> Result<(), String> {
        let (Replicated::Create { webhook, .. }
        | Replicated::Replace { webhook, .. }
        | Replicated::Upsert { webhook }) = &entry.change
        else {
            return Ok(());
        };
        let opened = self
            .unseal(webhook)
            .and_then(|keys| self.subscription_of(webhook.clone(), Some(keys)))
            .map_err(|e| format!("its webhook cannot be opened: {e}"));
        // A current record that cannot be read is no reason to keep one out: the new one
        // is then checked whole.
        let current = self.get(&webhook.org, &webhook.id).ok().flatten();
        validate(opened.as_ref().map_err(Clone::clone), current.as_ref())
    }

    /// An import seeds a namespace only if nothing but marks and that same import was
    /// applied before it: two stores imported into one namespace never merge. Decided
    /// alike on every node, from the entries before.
    fn admit_seed(&self, entry: &Entry) -> Result<()> {
        match entry.seed {
            Some(seed) => match self.replication.get(SEED_KEY)? {
                Some(first) if first.as_ref() == seed.as_bytes() => Ok(()),
                Some(_) => Err(Error::SeedRefused(seed)),
                None if self.replication.get(WRITTEN_KEY)?.is_some() => {
                    Err(Error::SeedRefused(seed))
                }
                None => {
                    self.replication.insert(SEED_KEY, seed.as_bytes())?;
                    Ok(())
                }
            },
            None if entry.is_mark() => Ok(()),
            None => {
                if self.replication.get(WRITTEN_KEY)?.is_none() {
                    self.replication.insert(WRITTEN_KEY, &[1])?;
                }
                Ok(())
            }
        }
    }

    /// This store's webhooks and dead letters as entries of import `seed`, written by
    /// `node`: what `hookwire store import` publishes to seed a namespace, and what
    /// `hookwire store restore` writes into an empty store. Secrets stay sealed under the
    /// store's key. Blocking.
    pub fn export(&self, seed: Uuid, node: &str) -> Result<Vec<Entry>> {
        self.export_entries(seed, node).collect()
    }

    /// [`Store::export`] one entry at a time, webhooks first, read while the store
    /// changes: each record is read whole, at one of its versions, but the trees are not
    /// one snapshot, so a webhook or dead letter written or removed meanwhile may or may
    /// not be in it. Blocking.
    pub fn export_entries<'a>(
        &'a self,
        seed: Uuid,
        node: &'a str,
    ) -> impl Iterator<Item = Result<Entry>> + 'a {
        let webhooks = self.subscriptions.iter().map(|item| -> Result<Replicated> {
            let webhook: Record = decode(&item?.1)?;
            Ok(Replicated::Upsert { webhook })
        });
        let letters = self.dead.iter().map(|letter| -> Result<Replicated> {
            Ok(Replicated::ArchiveDeadLetter { letter: letter? })
        });
        webhooks.chain(letters).map(move |change| {
            Ok(Entry {
                seed: Some(seed),
                ..Entry::new(node, change?)
            })
        })
    }

    /// Whether this store holds any webhook or dead letter: a restore goes into an empty
    /// one only.
    pub fn holds_anything(&self) -> Result<bool> {
        Ok(!self.subscriptions.is_empty() || self.dead.iter().next().transpose()?.is_some())
    }

    /// Checks an entry of an export before [`Store::restore_entry`] writes it: one that is
    /// not of an export, or whose webhook `validate` refuses, is [`Error::Refused`]; one
    /// whose secrets do not open under this store's keys is [`Error::Unseal`].
    pub fn check_restorable(&self, entry: &Entry, validate: Option<&Validate>) -> Result<()> {
        match &entry.change {
            Replicated::Upsert { webhook } => {
                self.unseal(webhook)?;
            }
            Replicated::ArchiveDeadLetter { .. } => {}
            _ => {
                return Err(Error::Refused(format!(
                    "a `{}` entry is not one of an export",
                    entry.kind()
                )));
            }
        }
        match validate {
            Some(validate) => self.validate_entry(entry, validate).map_err(Error::Refused),
            None => Ok(()),
        }
    }

    /// Writes an entry of an export into this store as the changes stream's reader
    /// applies it, without the stream: no offset and no import are recorded, so the
    /// store's replication state stays that of a store never replicated.
    pub fn restore_entry(&self, entry: &Entry) -> Result<()> {
        self.check_restorable(entry, None)?;
        self.apply_change(entry, None)
    }

    /// Records `offset` as applied, alone: for an entry that changed nothing.
    pub fn record_offset(&self, offset: u64) -> Result<()> {
        self.replication
            .insert(APPLIED_OFFSET_KEY, &offset.to_be_bytes())?;
        Ok(())
    }

    /// The offset of the last entry applied from the changes stream; `None` before the
    /// first.
    pub fn applied_offset(&self) -> Result<Option<u64>> {
        self.replication
            .get(APPLIED_OFFSET_KEY)?
            .map(|raw| {
                <[u8; 8]>::try_from(raw.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::Corrupt("applied offset".into()))
            })
            .transpose()
    }
}
