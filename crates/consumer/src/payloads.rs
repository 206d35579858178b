//! Keeps each event's body for resending. Bodies are gathered by a background task and
//! written in batches on the blocking pool, never on the ack path and without a flush of
//! their own, as the attempt log is: a crash can lose the last moments of them (those
//! events cannot be resent; sled makes its writes durable every half second), never a
//! delivery. The same task prunes them by age.
//!
//! With replication, a batch is published to the payloads stream instead, which every
//! node (this one included) reads and keeps: a resend may reach any node.

use std::sync::Arc;
use std::time::Duration;

use hookwire_core::now_ms;
use hookwire_store::{Change, Changelog, Payload, PayloadLimits, Store};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Bodies waiting to be written before new ones are dropped (and counted): at most
/// this many times `delivery.max_event_bytes` of memory.
const BUFFER: usize = 4096;
const BATCH: usize = 512;
/// How long bodies are gathered before they are written.
const LINGER: Duration = Duration::from_millis(100);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

enum Message {
    Keep(Box<Payload>),
    /// Answered once everything sent before it is written.
    Sync(oneshot::Sender<()>),
}

/// Sends bodies to the archive's writer task. Clones share it.
#[derive(Debug, Clone)]
pub struct PayloadArchive {
    tx: mpsc::Sender<Message>,
}

impl PayloadArchive {
    /// Starts the writer task; it ends when every clone is dropped. Bodies are kept within
    /// `limits`. With `stream`, batches are published to it rather than written here.
    pub fn spawn(store: Store, limits: PayloadLimits, stream: Option<Arc<dyn Changelog>>) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(write_loop(store, limits, stream, rx));
        Self { tx }
    }

    /// Queues one event's body. Never waits: when the writer is behind, it is dropped.
    pub fn keep(&self, payload: Payload) {
        if self.tx.try_send(Message::Keep(Box::new(payload))).is_err() {
            metrics::counter!("hookwire_payloads_dropped_total").increment(1);
        }
    }

    /// Waits until every body queued so far is written (graceful shutdown, tests).
    pub async fn sync(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Sync(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

/// Applies `change` to the store on the blocking pool, without a flush: nothing waits
/// for these writes to be durable.
async fn apply(store: &Store, change: Change) -> hookwire_store::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.apply(change))
        .await
        .unwrap_or(Err(hookwire_store::Error::WriterStopped))
}

async fn write_loop(
    store: Store,
    limits: PayloadLimits,
    stream: Option<Arc<dyn Changelog>>,
    mut rx: mpsc::Receiver<Message>,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        let first = tokio::select! {
            message = rx.recv() => match message {
                Some(message) => message,
                None => return,
            },
            _ = prune.tick() => {
                if let Err(e) = apply(&store, limits.prune(now_ms())).await {
                    warn!(error = %e, "Pruning the kept event bodies failed; tried again in a minute.");
                }
                continue;
            }
        };
        if matches!(first, Message::Keep(_)) && rx.len() < BATCH {
            tokio::time::sleep(LINGER).await;
        }
        let (mut payloads, mut syncs) = (Vec::new(), Vec::new());
        let mut open = true;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Keep(p) => payloads.push(*p),
                Message::Sync(done) => syncs.push(done),
            }
            if payloads.len() < BATCH {
                match rx.try_recv() {
                    Ok(message) => next = Some(message),
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
        }
        if !payloads.is_empty() {
            let n = payloads.len();
            let payloads = match &stream {
                None => payloads,
                Some(stream) => match publish(stream.as_ref(), &payloads).await {
                    Ok(()) => Vec::new(),
                    Err(e) => {
                        // Kept here at least: a resend through this node still finds them.
                        warn!(error = %e, kept_here = n, "Event bodies could not be published to the payloads stream; kept on this node only.");
                        payloads
                    }
                },
            };
            if payloads.is_empty() {
                // Published: this node keeps them as it reads the stream.
            } else if let Err(e) = apply(&store, Change::RecordPayloads(payloads)).await {
                metrics::counter!("hookwire_payloads_dropped_total").increment(n as u64);
                warn!(error = %e, lost = n, "Event bodies could not be kept; those events cannot be resent.");
            }
        }
        for done in syncs {
            let _ = done.send(());
        }
        if !open {
            return;
        }
    }
}

async fn publish(stream: &dyn Changelog, payloads: &[Payload]) -> Result<(), String> {
    let bytes = Payload::encode_batch(payloads).map_err(|e| e.to_string())?;
    stream.append(bytes).await
}
