//! Errors of the store.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// sled failed (I/O, a lock held by another process…).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store was written by a newer hookwire.
    #[error(
        "store schema version {found} is newer than this hookwire supports ({supported}); upgrade hookwire"
    )]
    SchemaTooNew {
        /// The version on disk.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A secret could not be decrypted: the `secrets.key` is not the one it was sealed with.
    #[error("cannot decrypt a signing secret: is secrets.key the key the store was written with?")]
    Unseal,
    /// The store's secrets were sealed under another key than `secrets.key` (and
    /// `secrets.previous_keys`): every signing secret would fail to decrypt.
    #[error(
        "secrets.key is not the key this store was written with (nor is any of secrets.previous_keys): its signing secrets cannot be decrypted. Set secrets.key to the store's key; to change keys, keep the old one in secrets.previous_keys and run `hookwire store reseal`"
    )]
    WrongKey,
    /// A pagination cursor that this store did not hand out.
    #[error("invalid cursor `{0}`")]
    InvalidCursor(String),
    /// A change refers to a subscription that does not exist.
    #[error("no subscription {0}")]
    NotFound(uuid::Uuid),
    /// A compare-and-swap found the subscription changed since it was read.
    #[error("subscription {id} changed meanwhile (version {found}, expected {expected})")]
    Conflict {
        /// The subscription.
        id: uuid::Uuid,
        /// The version the writer read.
        expected: u64,
        /// The version stored now.
        found: u64,
    },
    /// An organization has the most subscriptions it may have.
    #[error("organization `{org}` already has the most webhooks allowed ({max})")]
    LimitReached {
        /// The organization.
        org: String,
        /// Its limit.
        max: usize,
    },
    /// A committed change was applied but could not be made durable.
    #[error("the store could not be flushed: {0}")]
    Flush(String),
    /// The [`Writer`](crate::Writer)'s thread is gone, so nothing more can be committed.
    #[error("the store writer has stopped")]
    WriterStopped,
    /// A replicated write could not be published to the changes stream, or was not
    /// applied by this node in time.
    #[error("replication: {0}")]
    Replication(String),
    /// An import into a namespace that already holds other changes, or another import.
    #[error(
        "import {0} refused: the namespace already holds other changes; import into a fresh namespace"
    )]
    SeedRefused(uuid::Uuid),
    /// An entry of the changes stream that the API would have refused (its target, its
    /// custom headers, its filter…): refused alike on every node configured alike.
    #[error("refused: {0}")]
    Refused(String),
}

impl Error {
    /// A refusal decided by the store's content (a conflict, a missing webhook, a limit),
    /// which every node applying the same change decides alike: not a failure of this
    /// node.
    pub fn is_decided(&self) -> bool {
        matches!(
            self,
            Self::NotFound(_)
                | Self::Conflict { .. }
                | Self::LimitReached { .. }
                | Self::SeedRefused(_)
                | Self::Refused(_)
        )
    }
}

/// The result type of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
