//! The settled journal: the `webhook-id`s of an event's deliveries whose outcome is
//! durable (delivered, scheduled for a retry, dead-lettered) while the event is not acked
//! yet, because an event is acked only when all its subscribers are done. A node killed
//! while a slow subscriber holds such an event has the broker redeliver it, and the
//! journal is how the next `serve` knows which of its deliveries not to make again. The
//! attempt log knows the delivered ones too, but only after its batch and sled's flush
//! (up to about 0.6 s), and not the retries scheduled; the journal is in the kernel's page
//! cache within a write, so a SIGKILL keeps it (a power loss may not: then the delivery
//! is made again, as at-least-once allows).
//!
//! An event's redelivery reads it by `webhook-id`. A task's message (a retry, a deferral,
//! a resend) is the very outcome its delivery's journaled entry may stand for, so it is
//! journaled and read by an id of that message instead: the delivery's id mixed with the
//! attempt it makes and the message's own times ([`SettledJournal::record_task`]).
//!
//! It is bounded: two generations of [`GENERATION`] ids, in memory as sets and on disk as
//! two files of 16 bytes an id. When the current one is full it becomes the previous one,
//! and the previous one is forgotten. A restart carries what the last process wrote into
//! the previous generation, with what that one held: the newest two generations' worth,
//! so that an event unacked across several restarts is still known. An event still unacked that long (tens of thousands
//! of deliveries later) loses only the retries its journal knew of: the deliveries made
//! are in the attempt log by then, and a forgotten retry is attempted again (a duplicate,
//! never a loss).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use tracing::warn;

/// Ids in one generation: a 256 KiB file, and about as much memory.
const GENERATION: usize = 16_384;
const CURRENT: &str = "settled.journal";
const PREVIOUS: &str = "settled.journal.previous";
const STAGED: &str = "settled.journal.staged";
/// Ids a restart carries into the previous generation: two generations' worth.
const CARRIED_IDS: usize = 2 * GENERATION;
/// An id on disk: the 128 bits a `webhook-id` carries.
const ID_BYTES: usize = 16;

/// See the module docs. Cloned handles share one journal; its writer task ends with the
/// last of them.
#[derive(Debug, Clone)]
pub struct SettledJournal {
    state: Arc<Mutex<State>>,
    /// Wakes the writer; one pending wake covers every record made before it is taken.
    wake: mpsc::Sender<()>,
}

#[derive(Debug, Default)]
struct State {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    /// The current generation's ids recorded and not written yet.
    unwritten: Vec<u8>,
    /// After a rotation: the ids of the generation that became the previous one that
    /// were not written yet. They go to its file before it is renamed.
    closing: Option<Vec<u8>>,
}

impl SettledJournal {
    /// Opens the journal in `dir` (the store's directory): what the last process wrote,
    /// and what it remembered, is the previous generation, and a new current one begins. Spawns its
    /// writer task.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let (current, previous) = (dir.join(CURRENT), dir.join(PREVIOUS));
        let last = read_raw(&current)?;
        let mut carried = read_raw(&previous)?;
        if !last.is_empty() {
            // What the last process wrote joins what it held, so that an event unacked
            // across several restarts (a kill loop) is still known: the newest
            // CARRIED_IDS of them, written aside and renamed, so a crash leaves one whole.
            carried.extend_from_slice(&last);
            carried.drain(..carried.len().saturating_sub(CARRIED_IDS * ID_BYTES));
            let staged = dir.join(STAGED);
            std::fs::write(&staged, &carried)?;
            std::fs::rename(&staged, &previous)?;
        }
        let remembered = carried
            .chunks_exact(ID_BYTES)
            .filter_map(|b| <[u8; ID_BYTES]>::try_from(b).ok())
            .map(u128::from_be_bytes)
            .collect();
        File::create(&current)?;
        let state = Arc::new(Mutex::new(State {
            previous: remembered,
            ..State::default()
        }));
        let (wake, woken) = mpsc::channel(1);
        tokio::spawn(write_loop(Arc::clone(&state), dir.to_owned(), woken));
        Ok(Self { state, wake })
    }

    /// Remembers that the delivery `webhook_id` was settled. An id that is not one hookwire
    /// makes is ignored.
    pub fn record(&self, webhook_id: &str) {
        if let Some(id) = parse(webhook_id) {
            self.insert(id);
        }
    }

    /// Remembers that the task message `task` was settled. Every copy of a task hookwire publishes differs in one of them (a
    /// deferral keeps the attempt number, not the due time), so a later copy is never
    /// taken for this one.
    pub(crate) fn record_task(&self, task: TaskCopy<'_>) {
        if let Some(id) = task.id() {
            self.insert(id);
        }
    }

    /// Whether the task message `task` is in the journal.
    pub(crate) fn contains_task(&self, task: TaskCopy<'_>) -> bool {
        task.id().is_some_and(|id| self.has(id))
    }

    fn insert(&self, id: u128) {
        let mut state = self.lock();
        if state.current.len() >= GENERATION {
            // A second rotation before the writer ran forgets the first one's tail, as the
            // sets forget its generation.
            state.previous = std::mem::take(&mut state.current);
            state.closing = Some(std::mem::take(&mut state.unwritten));
        }
        state.current.insert(id);
        state.unwritten.extend_from_slice(&id.to_be_bytes());
        drop(state);
        // Full: a wake is pending, and will find this record too.
        let _ = self.wake.try_send(());
    }

    /// Whether the delivery `webhook_id` is in the journal.
    pub fn contains(&self, webhook_id: &str) -> bool {
        parse(webhook_id).is_some_and(|id| self.has(id))
    }

    fn has(&self, id: u128) -> bool {
        let state = self.lock();
        state.current.contains(&id) || state.previous.contains(&id)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Appends what was recorded, one write per wake-up, so that a burst is one write. A
/// rotation finishes the current file, renames it over the previous one and starts a
/// new one, as the sets did.
async fn write_loop(state: Arc<Mutex<State>>, dir: PathBuf, mut woken: mpsc::Receiver<()>) {
    let (current, previous) = (dir.join(CURRENT), dir.join(PREVIOUS));
    let mut file = match OpenOptions::new().append(true).open(&current) {
        Ok(file) => file,
        Err(error) => {
            warn!(%error, path = %current.display(), "Settled journal cannot be opened; redeliveries after a crash rely on the attempt log alone.");
            return;
        }
    };
    while woken.recv().await.is_some() {
        let (closing, bytes) = {
            let mut state = lock(&state);
            (state.closing.take(), std::mem::take(&mut state.unwritten))
        };
        let write = || {
            if let Some(closing) = closing {
                file.write_all(&closing)?;
                std::fs::rename(&current, &previous)?;
                file = File::create(&current)?;
            }
            file.write_all(&bytes)
        };
        if let Err(error) = write() {
            warn!(%error, path = %current.display(), "Settled journal write failed; a redelivery after a crash may repeat a delivery.");
        }
    }
}

/// One task message, as the journal tells it from the others of its delivery.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskCopy<'a> {
    /// Its delivery's `webhook-id`.
    pub(crate) webhook_id: &'a str,
    /// The attempt it makes.
    pub(crate) attempt: u32,
    /// When its delivery was first seen (a resend or replay is seen anew).
    pub(crate) first_seen_ms: u64,
    /// When the tier it came back from was due to expire it; `None` if not parked.
    pub(crate) due_ms: Option<u64>,
}

impl TaskCopy<'_> {
    /// The delivery's id with its lowest bit flipped (never the delivery's own id) and
    /// the rest mixed with a hash of the copy's fields: stable across restarts of one
    /// build (SipHash with fixed keys), and two copies of one delivery collide with odds
    /// of 2^-63.
    fn id(&self) -> Option<u128> {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let id = parse(self.webhook_id)?;
        let mut hasher = DefaultHasher::new();
        (self.attempt, self.first_seen_ms, self.due_ms).hash(&mut hasher);
        Some(id ^ (u128::from(hasher.finish()) << 1 | 1))
    }
}

/// The 128 bits of a `webhook-id` (`msg_` and 32 hex digits).
fn parse(webhook_id: &str) -> Option<u128> {
    let hex = webhook_id.strip_prefix("msg_")?;
    (hex.len() == 32)
        .then(|| u128::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The whole ids in `path`; none when it does not exist. A torn last id (the process
/// died mid-write) is left out.
fn read_raw(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut raw)?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(raw),
        Err(e) => return Err(e),
    };
    raw.truncate(raw.len() - raw.len() % ID_BYTES);
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(n: u32) -> String {
        format!("msg_{n:032x}")
    }

    async fn written(dir: &Path, ids: usize) {
        for _ in 0..200 {
            let len = std::fs::metadata(dir.join(CURRENT)).map_or(0, |m| m.len());
            if len == (ids * ID_BYTES) as u64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the journal did not reach {ids} ids on disk");
    }

    #[tokio::test]
    async fn what_one_process_recorded_the_next_one_finds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = SettledJournal::open(dir.path()).expect("open");
        journal.record(&id(1));
        journal.record(&id(2));
        journal.record("not-a-webhook-id");
        assert!(journal.contains(&id(1)));
        assert!(!journal.contains(&id(3)));
        written(dir.path(), 2).await;
        drop(journal);

        let next = SettledJournal::open(dir.path()).expect("reopen");
        assert!(next.contains(&id(1)) && next.contains(&id(2)));
        assert!(!next.contains(&id(3)));
        drop(next);
        let third = SettledJournal::open(dir.path()).expect("reopen again");
        assert!(third.contains(&id(2)), "kept across an idle restart");
        // Restarts that each record something (a kill loop) keep what the first did.
        third.record(&id(3));
        written(dir.path(), 1).await;
        drop(third);
        let fourth = SettledJournal::open(dir.path()).expect("reopen");
        fourth.record(&id(4));
        written(dir.path(), 1).await;
        drop(fourth);
        let fifth = SettledJournal::open(dir.path()).expect("reopen");
        assert!(
            (1..=4).all(|n| fifth.contains(&id(n))),
            "kept across restarts"
        );
    }

    #[tokio::test]
    async fn a_task_message_is_told_from_its_delivery_and_from_its_other_copies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = SettledJournal::open(dir.path()).expect("open");
        let delivery = id(7);
        let copy = |attempt, first_seen_ms, due_ms| TaskCopy {
            webhook_id: &delivery,
            attempt,
            first_seen_ms,
            due_ms,
        };
        let retry = copy(2, 1_000, Some(6_000));
        journal.record_task(retry);
        assert!(journal.contains_task(retry));
        written(dir.path(), 1).await;
        drop(journal);
        let next = SettledJournal::open(dir.path()).expect("reopen");
        assert!(next.contains_task(retry), "kept across a restart");
        assert!(
            !next.contains(&delivery),
            "the event's delivery is not taken for settled by its retry's"
        );
        for other in [
            copy(3, 1_000, Some(16_000)), // the next retry
            copy(2, 1_000, Some(11_000)), // the same attempt deferred: another due time
            copy(2, 50_000, None),        // a resend of it, seen anew
        ] {
            assert!(!next.contains_task(other), "{other:?}");
        }
    }

    #[tokio::test]
    async fn two_generations_are_kept_and_no_more() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = SettledJournal::open(dir.path()).expect("open");
        let total = 2 * GENERATION as u32 + 10;
        for n in 0..total {
            journal.record(&id(n));
        }
        assert!(
            !journal.contains(&id(0)),
            "the oldest generation is forgotten"
        );
        assert!(journal.contains(&id(GENERATION as u32)));
        assert!(journal.contains(&id(total - 1)));
        written(dir.path(), 10).await;
        drop(journal);
        let next = SettledJournal::open(dir.path()).expect("reopen");
        assert!(next.contains(&id(GENERATION as u32)) && next.contains(&id(total - 1)));
        assert!(!next.contains(&id(0)));
        for file in [CURRENT, PREVIOUS] {
            let bytes = std::fs::metadata(dir.path().join(file))
                .expect("file")
                .len();
            assert!(
                bytes <= (CARRIED_IDS * ID_BYTES) as u64,
                "bounded on disk: {bytes}"
            );
        }
    }

    #[test]
    fn only_hookwires_own_ids_are_read() {
        assert_eq!(parse(&id(255)), Some(255));
        assert_eq!(parse("msg_xyz"), None);
        assert_eq!(parse("evt_00000000000000000000000000000001"), None);
    }
}
