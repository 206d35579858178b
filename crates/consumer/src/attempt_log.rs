//! The attempt log writer, a [`BatchWriter`]: attempts are recorded in batches by a
//! background task, never on the ack path: a crash can lose the last moments of the log,
//! never a delivery. The same task applies the retention of the log and of the
//! dead-letter archive.
//!
//! With replication, a batch is published to the attempts stream instead, which every
//! node (this one included) reads into its own log: each node answers for every node's
//! attempts, and a node whose store is lost gets them back.

use std::sync::Arc;
use std::time::Duration;

use hookwire_amqp::wire::Task;
use hookwire_core::{AttemptFailure, Outcome, Transformed, now_ms};
use hookwire_http::AttemptReport;
use hookwire_store::{AttemptRecord, Change, Changelog, MAX_EXCERPT_BYTES, Store};

use crate::batch_writer::{BatchWriter, Batched, before, json_text_bytes_at_most};

/// How long attempts and dead letters are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Attempts older than this go.
    pub max_age: Duration,
    /// Each webhook keeps at most this many.
    pub per_webhook: usize,
    /// Dead letters older than this go.
    pub dead_letter_max_age: Duration,
    /// Each organization keeps at most this many dead letters.
    pub dead_letters_per_org: usize,
}

/// The attempt log as a [`Batched`] kind: attempt records, pruned with the dead-letter
/// archive.
struct Attempts {
    retention: Retention,
}

impl Batched for Attempts {
    type Record = AttemptRecord;
    const BUFFER: usize = 65_536;
    const BATCH: usize = 1024;
    /// Short: another node takes a delivery for settled only once the attempts stream
    /// has brought its record, so what a SIGKILL loses of these comes back as duplicates.
    const LINGER: Duration = Duration::from_millis(25);
    const PRUNE_AFTER: Option<usize> = Some(10_000);
    const DROPPED_METRIC: &'static str = "hookwire_attempt_log_dropped_total";
    const UNPUBLISHED_METRIC: &'static str = "hookwire_attempts_unpublished_total";
    const WHAT: &'static str = "Attempt records";

    fn write(records: Vec<AttemptRecord>) -> Change {
        Change::RecordAttempts(records)
    }

    fn encode(records: &[AttemptRecord]) -> hookwire_store::Result<Vec<u8>> {
        AttemptRecord::encode_batch(records)
    }

    fn encoded_bytes_at_most(r: &AttemptRecord) -> usize {
        // The field names, the separators, the UUID and the numbers.
        const FIXED: usize = 512;
        [&r.event_id, &r.message_id, &r.outcome, &r.response_excerpt]
            .into_iter()
            .chain(r.error_kind.as_ref())
            .chain(r.error.as_ref())
            .map(|text| json_text_bytes_at_most(text))
            .fold(FIXED, usize::saturating_add)
    }

    fn prunes(&self, early: bool) -> Vec<Change> {
        let attempts = Change::PruneAttempts {
            older_than_ms: before(self.retention.max_age),
            keep_per_webhook: self.retention.per_webhook,
        };
        if early {
            // Only the log grows with the attempts written.
            return vec![attempts];
        }
        vec![
            attempts,
            Change::PruneDeadLetters {
                older_than_ms: before(self.retention.dead_letter_max_age),
                keep_per_org: self.retention.dead_letters_per_org,
            },
        ]
    }
}

/// Sends attempts to the writer task. Clones share it.
#[derive(Debug, Clone)]
pub struct AttemptLog {
    writer: BatchWriter<Attempts>,
}

impl AttemptLog {
    /// Starts the writer task; it ends when every clone is dropped. With `stream`, batches
    /// are published to it rather than written here.
    pub fn spawn(store: Store, retention: Retention, stream: Option<Arc<dyn Changelog>>) -> Self {
        Self {
            writer: BatchWriter::spawn(Attempts { retention }, store, stream),
        }
    }

    /// Queues one attempt. Never waits: when the writer is behind, the record is dropped.
    pub fn record(&self, record: AttemptRecord) {
        self.writer.send(record);
    }

    /// Waits until every attempt recorded so far is written (graceful shutdown).
    pub async fn sync(&self) {
        self.writer.sync().await;
    }
}

/// The attempt log's view of one attempt.
pub(crate) fn attempt_record(
    task: &Task,
    message_id: &str,
    attempt: u32,
    report: &AttemptReport,
    transformed: Option<Transformed>,
) -> AttemptRecord {
    let mut excerpt = report.response_excerpt.clone();
    if excerpt.len() > MAX_EXCERPT_BYTES {
        let mut end = MAX_EXCERPT_BYTES;
        while !excerpt.is_char_boundary(end) {
            end -= 1;
        }
        excerpt.truncate(end);
    }
    AttemptRecord {
        subscription_id: task.subscription_id,
        event_id: task.event_id.clone(),
        message_id: message_id.to_owned(),
        attempt,
        at_ms: now_ms().saturating_sub(u64::try_from(report.latency.as_millis()).unwrap_or(0)),
        outcome: outcome_name(report.outcome).to_owned(),
        status: report.status,
        latency_ms: u64::try_from(report.latency.as_millis()).unwrap_or(u64::MAX),
        error_kind: report.failure.map(|f| {
            match f {
                AttemptFailure::Timeout => "timeout",
                AttemptFailure::Connect => "connect",
                AttemptFailure::Tls => "tls",
                AttemptFailure::TargetRefused => "target_refused",
                AttemptFailure::Other => "other",
            }
            .to_owned()
        }),
        error: report.error.clone(),
        response_excerpt: excerpt,
        transformed,
    }
}

/// The outcome's name in the attempt log and in metric labels.
pub(crate) fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered => hookwire_store::DELIVERED,
        Outcome::Retry { .. } => "retry",
        Outcome::Permanent => "permanent",
        Outcome::Gone => "gone",
    }
}
