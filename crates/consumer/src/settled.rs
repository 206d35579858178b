//! The settled journal: the `webhook-id`s of an event's deliveries whose outcome is
//! durable (delivered, scheduled for a retry, dead-lettered) while the event is not acked
//! yet, because an event is acked only when all its subscribers are done. A node killed
//! while a slow subscriber holds such an event has the broker redeliver it, and the
//! journal is how the next `serve` knows which of its deliveries not to make again. The
//! attempt log knows the delivered ones too, but only after its batch and sled's flush
//! (up to about 0.6 s), and not the retries scheduled; the journal is written to the
//! kernel's page cache by the call that records it (one 16-byte write, a few µs), so a
//! SIGKILL right after keeps it (a power loss may not: then the delivery is made again,
//! as at-least-once allows).
//!
//! An event's redelivery reads it by `webhook-id`. A task's message (a retry, a deferral,
//! a resend) is the very outcome its delivery's journaled entry may stand for, so it is
//! journaled and read by an id of that message instead: the delivery's id mixed with the
//! attempt it makes and the message's own times ([`SettledJournal::record_task`]).
//!
//! A redelivered message whose delivery the journal does not know as settled is made
//! again; what its earlier handling may have published for that delivery in the
//! meantime (a retry whose confirm arrived just before the kill) would be attempted
//! too. So every task message carries its lineage, the handling that published it, and
//! the redelivery records the earlier handlings as superseded
//! ([`SettledJournal::supersede_earlier`]): their copies are dropped when they come back.
//!
//! It is bounded: two generations of [`GENERATION`] ids, in memory as sets and on disk as
//! two files of 16 bytes an id. When the current one is full it becomes the previous one,
//! and the previous one is forgotten. A restart carries what the last process wrote into
//! the previous generation, with what that one held: the newest two generations' worth,
//! so that an event unacked across several restarts is still known. An event still
//! unacked that long (tens of thousands of deliveries later) loses only the retries its
//! journal knew of: the deliveries made are in the attempt log by then, and a forgotten
//! retry is attempted again (a duplicate, never a loss).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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

/// See the module docs. Cloned handles share one journal.
#[derive(Debug, Clone)]
pub struct SettledJournal {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    dir: PathBuf,
    /// The current generation's file; `None` once a write failed, after one warning.
    file: Option<File>,
}

impl SettledJournal {
    /// Opens the journal in `dir` (the store's directory): what the last process wrote,
    /// and what it remembered, is the previous generation, and a new current one begins.
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
        let file = new_current(dir)?;
        Ok(Self {
            state: Arc::new(Mutex::new(State {
                current: HashSet::new(),
                previous: remembered,
                dir: dir.to_owned(),
                file: Some(file),
            })),
        })
    }

    /// Remembers that the delivery `webhook_id` was settled. An id that is not one hookwire
    /// makes is ignored.
    pub fn record(&self, webhook_id: &str) {
        if let Some(id) = parse(webhook_id) {
            self.insert(id);
        }
    }

    /// Remembers that the task message `task` was settled. Every copy of a task hookwire
    /// publishes differs in one of them (a deferral keeps the attempt number, not the due
    /// time), so a later copy is never taken for this one.
    pub(crate) fn record_task(&self, task: TaskCopy<'_>) {
        if let Some(id) = task.id() {
            self.insert(id);
        }
    }

    /// Whether the task message `task` is in the journal.
    pub(crate) fn contains_task(&self, task: TaskCopy<'_>) -> bool {
        task.id().is_some_and(|id| self.has(id))
    }

    /// Inserts `id` and appends it to the current file before returning: a kill after
    /// the caller goes on (to ack, say) finds it.
    fn insert(&self, id: u128) {
        let mut state = self.lock();
        if state.current.len() >= GENERATION {
            state.rotate();
        }
        state.current.insert(id);
        if let Some(file) = &mut state.file
            && let Err(error) = file.write_all(&id.to_be_bytes())
        {
            warn!(%error, dir = %state.dir.display(), "Settled journal write failed; until a restart, a redelivery after a crash may repeat a delivery.");
            state.file = None;
        }
    }

    /// `handled`'s delivery is made again by its `incarnation`th handling (its message was
    /// redelivered): what its earlier handlings published for it (a retry or a deferral
    /// confirmed after their last journal entry, say) is left behind, so that only this
    /// handling's outcome goes on.
    pub(crate) fn supersede_earlier(&self, handled: Handled<'_>, incarnation: u32) {
        if let Some(id) = handled.id() {
            for earlier in 0..incarnation {
                self.insert(superseded(lineage(id, earlier)));
            }
        }
    }

    /// Whether the handling a task message names as its lineage was superseded.
    pub(crate) fn superseded(&self, lineage: u128) -> bool {
        self.has(superseded(lineage))
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
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// The full current generation becomes the previous one, in memory and on disk (its
    /// file renamed over the previous one's), and a new one begins.
    fn rotate(&mut self) {
        self.previous = std::mem::take(&mut self.current);
        let renamed = std::fs::rename(self.dir.join(CURRENT), self.dir.join(PREVIOUS));
        match renamed.and_then(|()| new_current(&self.dir)) {
            Ok(file) => self.file = Some(file),
            Err(error) => {
                warn!(%error, dir = %self.dir.display(), "Settled journal cannot begin a new generation; until a restart, a redelivery after a crash may repeat a delivery.");
                self.file = None;
            }
        }
    }
}

/// An empty current generation's file, open for appending.
fn new_current(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.join(CURRENT))
}

/// A delivery as one message carries it: an event's or a chunk's delivery (its
/// `webhook-id`), or a task message's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handled<'a> {
    Delivery(&'a str),
    Task(TaskCopy<'a>),
}

impl Handled<'_> {
    /// The lineage of what the `incarnation`th handling of this delivery publishes for it
    /// ([`hookwire_amqp::wire::LINEAGE`]); `None` for an id hookwire does not make.
    pub(crate) fn lineage(self, incarnation: u32) -> Option<u128> {
        self.id().map(|id| lineage(id, incarnation))
    }

    fn id(self) -> Option<u128> {
        match self {
            Self::Delivery(webhook_id) => parse(webhook_id),
            Self::Task(copy) => copy.id(),
        }
    }
}

fn lineage(id: u128, incarnation: u32) -> u128 {
    mixed(("lineage", id, incarnation))
}

/// The journal's entry for a superseded lineage: never a delivery's or a task's id.
fn superseded(lineage: u128) -> u128 {
    mixed(("superseded", lineage))
}

/// 128 bits of SipHash (fixed keys: stable across restarts of one build) over `parts`.
fn mixed(parts: impl std::hash::Hash) -> u128 {
    use std::hash::{DefaultHasher, Hasher};
    let half = |salt: u8| {
        let mut hasher = DefaultHasher::new();
        std::hash::Hash::hash(&(salt, &parts), &mut hasher);
        hasher.finish()
    };
    u128::from(half(0)) << 64 | u128::from(half(1))
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

    fn id(n: u32) -> String {
        format!("msg_{n:032x}")
    }

    /// The current file holds `ids` ids as soon as they are recorded.
    fn written(dir: &Path, ids: usize) {
        let len = std::fs::metadata(dir.join(CURRENT)).map_or(0, |m| m.len());
        assert_eq!(len, (ids * ID_BYTES) as u64, "ids on disk");
    }

    #[test]
    fn what_one_process_recorded_the_next_one_finds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = SettledJournal::open(dir.path()).expect("open");
        journal.record(&id(1));
        journal.record(&id(2));
        journal.record("not-a-webhook-id");
        assert!(journal.contains(&id(1)));
        assert!(!journal.contains(&id(3)));
        written(dir.path(), 2);
        drop(journal);

        let next = SettledJournal::open(dir.path()).expect("reopen");
        assert!(next.contains(&id(1)) && next.contains(&id(2)));
        assert!(!next.contains(&id(3)));
        drop(next);
        let third = SettledJournal::open(dir.path()).expect("reopen again");
        assert!(third.contains(&id(2)), "kept across an idle restart");
        // Restarts that each record something (a kill loop) keep what the first did.
        third.record(&id(3));
        written(dir.path(), 1);
        drop(third);
        let fourth = SettledJournal::open(dir.path()).expect("reopen");
        fourth.record(&id(4));
        written(dir.path(), 1);
        drop(fourth);
        let fifth = SettledJournal::open(dir.path()).expect("reopen");
        assert!(
            (1..=4).all(|n| fifth.contains(&id(n))),
            "kept across restarts"
        );
    }

    #[test]
    fn a_task_message_is_told_from_its_delivery_and_from_its_other_copies() {
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
        written(dir.path(), 1);
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

    #[test]
    fn a_redelivery_supersedes_the_earlier_handlings_and_not_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = SettledJournal::open(dir.path()).expect("open");
        let delivery = id(9);
        let handled = Handled::Delivery(&delivery);
        let [first, second, third] = [0, 1, 2].map(|n| handled.lineage(n).expect("lineage"));
        assert_ne!(first, second);
        journal.supersede_earlier(handled, 2);
        drop(journal);
        let next = SettledJournal::open(dir.path()).expect("reopen");
        assert!(next.superseded(first) && next.superseded(second));
        assert!(!next.superseded(third), "the redelivery's own copies go on");
        let other = id(10);
        assert!(!next.superseded(Handled::Delivery(&other).lineage(0).expect("lineage")));
        assert!(
            !next.contains(&delivery),
            "superseded is not settled: the redelivery makes the delivery"
        );
        assert_eq!(Handled::Delivery("not-a-webhook-id").lineage(0), None);
    }

    #[test]
    fn two_generations_are_kept_and_no_more() {
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
        written(dir.path(), 10);
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
