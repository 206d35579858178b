//! What a replication stream's reader lets through: an envelope sealed under the stream
//! key for this very stream (`hookwire_amqp::envelope`), not a copy of one it took
//! before, of a version this build knows. Everything else is refused and counted (its
//! offset recorded by the caller, so the reader never stalls on it), except an authentic
//! envelope of an unknown version: the reader stops there, and `/readyz` says why, until
//! a build that knows the version restarts it.
//!
//! A copy is told by its writer's sequence: a writer's envelopes reach the stream in the
//! order of their sequence, and a copy always comes after its original, so a reader
//! refuses anything not above the last sequence it took from that writer's session.

use std::collections::HashMap;

use hookwire_amqp::envelope::{Origin, Refused, StreamKey};
use hookwire_store::Store;
use tracing::warn;
use uuid::Uuid;

/// What to do with a delivery.
#[derive(Debug)]
pub(crate) enum Verdict<'a> {
    /// Apply `body`; once applied, [`Guard::applied`] with `origin`.
    Apply {
        body: &'a [u8],
        /// `None` for an entry written before envelopes existed.
        origin: Option<Origin>,
    },
    /// Record the offset and move on: counted and logged already.
    Refuse,
    /// Stop reading this stream: the problem for `/readyz`, logged already.
    Halt(String),
}

/// One stream's reader's guard.
#[derive(Debug)]
pub(crate) struct Guard {
    /// `changes`, `attempts` or `payloads`.
    label: &'static str,
    /// The stream's name, which every envelope of it is sealed for.
    stream: String,
    key: StreamKey,
    /// The last sequence taken from each writer's session.
    taken: HashMap<(String, Uuid), u64>,
    /// Entries without an envelope are what nodes of an older build wrote: the changes
    /// stream applies them until the first envelope it takes (a store written before the
    /// upgrade is rebuilt from them), never after.
    unsealed_allowed: bool,
}

impl Guard {
    /// The guard of the `label` stream named `stream`, with what this node took before.
    pub(crate) fn load(
        store: &Store,
        label: &'static str,
        stream: String,
        key: StreamKey,
    ) -> hookwire_store::Result<Self> {
        let taken: HashMap<_, _> = store
            .stream_sessions(label)?
            .into_iter()
            .map(|s| ((s.node, s.session), s.seq))
            .collect();
        Ok(Self {
            label,
            unsealed_allowed: label == "changes" && taken.is_empty(),
            stream,
            key,
            taken,
        })
    }

    /// What to do with the delivery `raw` at `offset`. An envelope let through counts as
    /// taken at once: the next delivery is judged after it.
    pub(crate) fn admit<'a>(&mut self, raw: &'a [u8], offset: u64) -> Verdict<'a> {
        match self.key.open(&self.stream, raw) {
            Ok(opened) => {
                let session = (opened.origin.node.clone(), opened.origin.session);
                if let Some(&last) = self.taken.get(&session)
                    && opened.origin.seq <= last
                {
                    return self.refuse(offset, "replayed", &opened.origin, last);
                }
                self.taken.insert(session, opened.origin.seq);
                self.unsealed_allowed = false;
                Verdict::Apply {
                    body: opened.body,
                    origin: Some(opened.origin),
                }
            }
            Err(Refused::Unsealed) if self.unsealed_allowed => Verdict::Apply {
                body: raw,
                origin: None,
            },
            Err(Refused::UnknownVersion(version)) => Verdict::Halt(self.halt(
                offset,
                &format!("envelope version {version}, which this build does not know"),
            )),
            Err(refused) => {
                crate::telemetry::stream_refused(self.label, refused.reason());
                warn!(
                    stream = %self.stream,
                    offset,
                    reason = refused.reason(),
                    "Refused an entry of the {} stream: {refused}; skipped. Someone who is not a hookwire node with this secrets.key published to the stream.",
                    self.label
                );
                Verdict::Refuse
            }
        }
    }

    fn refuse(
        &self,
        offset: u64,
        reason: &'static str,
        origin: &Origin,
        last: u64,
    ) -> Verdict<'static> {
        crate::telemetry::stream_refused(self.label, reason);
        warn!(
            stream = %self.stream,
            offset,
            reason,
            node = %origin.node,
            session = %origin.session,
            seq = origin.seq,
            last_seq = last,
            "Refused an entry of the {} stream: a copy of one already taken, published again; skipped.",
            self.label
        );
        Verdict::Refuse
    }

    /// Stops on an authentic entry this build cannot apply (a newer build wrote it): the
    /// problem for `/readyz`, counted and logged.
    pub(crate) fn halt(&self, offset: u64, what: &str) -> String {
        crate::telemetry::stream_halted(self.label);
        let problem = format!(
            "stopped applying the {} stream at offset {offset}: an entry of {what}; upgrade this node",
            self.label
        );
        tracing::error!(stream = %self.stream, offset, "{problem}.");
        problem
    }

    /// Notes, in the store, that the envelope from `origin` was applied: a reader that
    /// starts again still refuses a copy of it.
    pub(crate) fn applied(
        &self,
        store: &Store,
        origin: Option<&Origin>,
    ) -> hookwire_store::Result<()> {
        match origin {
            Some(o) => store.note_stream_session(self.label, &o.node, &o.session, o.seq),
            None => Ok(()),
        }
    }
}
