//! The node's side of the replication streams, one concern a file:
//!
//! - [`publisher`]: [`StreamChangelog`](publisher::StreamChangelog) publishes this node's
//!   writes (its changes, its batches of attempts and of event bodies) to their stream.
//! - [`changes`]: [`read_changes`] applies every node's writes from the changes stream
//!   into this node's store, in the stream's order, resuming after the last offset applied.
//! - [`batches`]: one reader for the attempts and payloads streams, parameterised by what
//!   it applies ([`read_attempts`], [`read_payloads`]).
//! - [`guard`]: what a reader lets through: an authentic envelope for that stream, not
//!   a copy of one it took before, of a version this build knows.
//! - [`settings`] and [`session`]: how a node reaches the streams, and a reader's
//!   sessions on connections of their own.
//! - [`catch_up`]: a node holds every change made before it started before it consumes.
//! - [`health`]: [`share_health`] publishes its webhooks' health transitions at an
//!   interval.
//!
//! Every reader and writer uses a connection of its own: a stream answers a `basic.nack`
//! with an error that closes the whole connection, so nothing here shares one with the
//! delivery channels. On a cluster each connects to any node and moves to the next after
//! a failure; every node holds the same offsets, so a reader resumes where it was on
//! whichever it reaches.

mod batches;
mod catch_up;
mod changes;
mod guard;
mod health;
mod publisher;
mod session;
mod settings;

use std::sync::Arc;

use hookwire_core::{Catalog, TargetPolicy};
use hookwire_store::{Changelog, Validate};
use tracing::warn;

pub(crate) use batches::{AttemptRetention, read_attempts, read_payloads};
pub(crate) use catch_up::catch_up;
pub(crate) use changes::read_changes;
pub(crate) use health::share_health;
pub(crate) use settings::{StreamSettings, Which};

/// A shared handle for the changes stream's publisher (or, with `Which::Payloads` or
/// `Which::Attempts`, that stream's).
pub(crate) fn changelog(settings: StreamSettings, which: Which) -> Arc<dyn Changelog> {
    Arc::new(publisher::StreamChangelog::new(settings, which))
}

/// Checks every webhook an entry of the changes stream writes as the API checks a request
/// (`hookwire_api::webhooks::check_replicated`); what it refuses is counted and logged.
pub(crate) fn validator(policy: TargetPolicy, catalog: Catalog) -> Validate {
    Arc::new(move |new, current| {
        let checked = new.and_then(|new| {
            hookwire_api::webhooks::check_replicated(new, current, &policy, &catalog)
        });
        checked.inspect_err(|why| {
            crate::telemetry::stream_refused("changes", "invalid");
            warn!(reason = %why, "Refused an entry of the changes stream: the API would have refused its webhook; skipped.");
        })
    })
}
