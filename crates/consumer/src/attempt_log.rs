//! The attempt log writer. Attempts are recorded in batches by a background task, never
//! on the ack path: a crash can lose the last [`LINGER`] of the log, never a delivery.
//! The same task applies the retention of the log and of the dead-letter archive.
//!
//! With replication, a batch is published to the attempts stream instead, which every
//! node (this one included) reads into its own log: each node answers for every node's
//! attempts, and a node whose store is lost gets them back.

use std::sync::Arc;
use std::time::Duration;

use hookwire_amqp::wire::Task;
use hookwire_core::{AttemptFailure, Outcome, now_ms};
use hookwire_http::AttemptReport;
use hookwire_store::{AttemptRecord, Change, Changelog, MAX_EXCERPT_BYTES, Store};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Records waiting to be written before new ones are dropped (and counted).
const BUFFER: usize = 65_536;
const BATCH: usize = 1024;
/// How long records are gathered before they are written: what a crash can lose of the log.
const LINGER: Duration = Duration::from_millis(100);
/// Prunes run this often, and the attempt log's also after every [`PRUNE_AFTER`] attempts
/// written.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_AFTER: usize = 10_000;

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

enum Message {
    Record(Box<AttemptRecord>),
    /// Answered once everything sent before it is written.
    Sync(oneshot::Sender<()>),
}

/// Sends attempts to the writer task. Clones share it.
#[derive(Debug, Clone)]
pub struct AttemptLog {
    tx: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl AttemptLog {
    /// Starts the writer task; it ends when every clone is dropped. With `stream`, batches
    /// are published to it rather than written here.
    pub fn spawn(store: Store, retention: Retention, stream: Option<Arc<dyn Changelog>>) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(write_loop(store, retention, stream, rx));
        Self { tx }
    }

    /// Queues one attempt. Never waits: when the writer is behind, the record is dropped.
    pub fn record(&self, record: AttemptRecord) {
        if self.tx.try_send(Message::Record(Box::new(record))).is_err() {
            metrics::counter!("hookwire_attempt_log_dropped_total").increment(1);
        }
    }

    /// Waits until every attempt recorded so far is written (graceful shutdown).
    pub async fn sync(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Sync(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(
    store: Store,
    retention: Retention,
    stream: Option<Arc<dyn Changelog>>,
    mut rx: mpsc::Receiver<Message>,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut written_since_prune = 0;
    loop {
        let first = tokio::select! {
            message = rx.recv() => match message {
                Some(message) => message,
                None => return,
            },
            _ = prune.tick() => {
                prune_now(&store, retention).await;
                written_since_prune = 0;
                let change = Change::PruneDeadLetters {
                    older_than_ms: before(retention.dead_letter_max_age),
                    keep_per_org: retention.dead_letters_per_org,
                };
                write(&store, change).await;
                continue;
            }
        };
        // Gather for a moment: sled charges per insert, so batching is most of the
        // attempt log's cost (docs/performance.md). The task sleeps rather than waiting on
        // the channel, which would wake it for every record.
        let (mut records, mut syncs) = (Vec::new(), Vec::new());
        let mut open = true;
        if matches!(first, Message::Record(_)) && rx.len() < BATCH {
            tokio::time::sleep(LINGER).await;
        }
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Record(r) => records.push(*r),
                // A sync (shutdown) is answered once what is gathered is written.
                Message::Sync(done) => syncs.push(done),
            }
            if records.len() < BATCH {
                match rx.try_recv() {
                    Ok(message) => next = Some(message),
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
        }
        if !records.is_empty() {
            written_since_prune += records.len();
            let unpublished = match &stream {
                None => records,
                Some(stream) => publish(stream.as_ref(), records).await,
            };
            if !unpublished.is_empty() {
                write(&store, Change::RecordAttempts(unpublished)).await;
            }
        }
        for done in syncs {
            let _ = done.send(());
        }
        // sled's memory follows the live log, so pruning by count as well as by time
        // bounds serve's memory under load (docs/history.md, "Memory").
        if written_since_prune >= PRUNE_AFTER {
            prune_now(&store, retention).await;
            prune.reset();
            written_since_prune = 0;
        }
        if !open {
            return;
        }
    }
}

/// Publishes `records` as one batch of the attempts stream; what could not be published
/// is returned, to keep on this node (counted): its attempts list still shows them, the
/// other nodes' do not.
async fn publish(stream: &dyn Changelog, records: Vec<AttemptRecord>) -> Vec<AttemptRecord> {
    let published = match AttemptRecord::encode_batch(&records) {
        Ok(bytes) => stream.append(bytes).await,
        Err(e) => Err(e.to_string()),
    };
    match published {
        // This node keeps them as it reads the stream.
        Ok(()) => Vec::new(),
        Err(e) => {
            metrics::counter!("hookwire_attempts_unpublished_total")
                .increment(records.len() as u64);
            warn!(error = %e, kept_here = records.len(), "Attempts could not be published to the attempts stream; kept on this node only.");
            records
        }
    }
}

async fn prune_now(store: &Store, retention: Retention) {
    let change = Change::PruneAttempts {
        older_than_ms: before(retention.max_age),
        keep_per_webhook: retention.per_webhook,
    };
    write(store, change).await;
}

/// The time (ms) `age` ago.
fn before(age: Duration) -> u64 {
    now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
}

async fn write(store: &Store, change: Change) {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.apply(change)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "Attempt log write or prune failed; a failed write loses its records.")
        }
        Err(e) => warn!(error = %e, "Attempt log writer panicked."),
    }
}

/// The attempt log's view of one attempt.
pub(crate) fn attempt_record(
    task: &Task,
    message_id: &str,
    attempt: u32,
    report: &AttemptReport,
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
                AttemptFailure::TargetRefused => "target_refused",
                AttemptFailure::Other => "other",
            }
            .to_owned()
        }),
        error: report.error.clone(),
        response_excerpt: excerpt,
    }
}

/// The outcome's name in the attempt log and in metric labels.
pub(crate) fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Permanent => "permanent",
        Outcome::Gone => "gone",
    }
}
