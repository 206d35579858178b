//! hookwire-store: the embedded sled store.
//!
//! - Subscriptions, keyed by `(org, id)`, with an index by `(org, event type)` for the
//!   delivery hot path.
//! - Signing secrets encrypted at rest with XChaCha20-Poly1305 ([`sealing`]).
//! - The attempt log and the dead-letter archive ([`AttemptRecord`], [`DeadLetter`]).
//! - Event bodies kept for resending, once per (org, event id) ([`Payload`]).
//! - A schema version: the store refuses to open one written by a newer hookwire.
//!
//! Every mutation is a [`Change`] applied by [`Store::apply`]. [`Writer`] group-commits
//! the writes that must be durable before anyone is answered; a replicated one sends them
//! through the changes stream as [`Entry`]s, which every node applies with
//! [`Store::apply_entry`], their offset in the same transaction.

mod attempt_log;
mod dead_letters;
mod error;
mod keys;
mod payloads;
mod records;
mod sealing;
mod store;
mod subscriber_cache;
mod transaction;
mod writer;

pub use error::{Error, Result};
pub use payloads::{KeptPayloads, Payload, PayloadLimits};
pub use records::{
    AttemptQuery, AttemptRecord, DELIVERED, DeadLetter, DeadLetterQuery, MAX_EXCERPT_BYTES, Page,
};
pub use store::{
    Change, Entry, HealthTransition, ReplicatedChange, SCHEMA_VERSION, Store, StreamSession,
    Validate,
};
pub use subscriber_cache::SubscriberList;
pub use writer::{Changelog, ReplicationStatus, Writer};
