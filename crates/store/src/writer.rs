//! Group commit: writes that must be durable before someone is answered (API writes,
//! disabling a webhook, archiving a dead letter) share one flush. The flush runs on a
//! dedicated thread, off the async workers.
//!
//! sled's flush alone does not survive a power loss: it makes its writes stable with
//! `sync_file_range`, which flushes neither the drive's cache nor the file's metadata
//! (its size), and writes values too large for a segment to `blobs/` without any sync;
//! its own `sync_all` runs only every `flush_every_ms`, in the background. So after each
//! flush the writer calls `fsync` on sled's data file, on each blob file and on the
//! directories, before it answers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

use crate::{Change, Error, Result, Store};

type Request = (Change, oneshot::Sender<Result<()>>);

/// Applies changes and answers once they are durable. Clones share one writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    requests: mpsc::Sender<Request>,
    /// Why the last batch could not be written, until a batch is written again.
    last_error: Arc<Mutex<Option<String>>>,
}

impl Writer {
    /// Starts the writer thread for `store`. It ends when every clone is dropped.
    pub fn spawn(store: Store) -> Self {
        let (requests, inbox) = mpsc::channel::<Request>();
        let last_error = Arc::new(Mutex::new(None));
        let health = last_error.clone();
        std::thread::Builder::new()
            .name("hookwire-store-writer".into())
            .spawn(move || {
                let files = SledFiles::new(store.path());
                while let Ok(first) = inbox.recv() {
                    // Everything queued behind the first request rides the same flush.
                    let batch: Vec<Request> =
                        std::iter::once(first).chain(inbox.try_iter()).collect();
                    let applied: Vec<(Result<()>, oneshot::Sender<Result<()>>)> = batch
                        .into_iter()
                        .map(|(change, reply)| (store.apply(change), reply))
                        .collect();
                    let flushed = store.flush().and_then(|()| files.sync());
                    let failed = match &flushed {
                        Err(e) => Some(e.to_string()),
                        // A write the store refused for its input (a missing webhook) says
                        // nothing about the disk; one that failed in sled does.
                        Ok(()) => applied.iter().find_map(|(r, _)| match r {
                            Err(e @ Error::Sled(_)) => Some(e.to_string()),
                            _ => None,
                        }),
                    };
                    *health.lock().unwrap_or_else(|e| e.into_inner()) = failed;
                    for (result, reply) in applied {
                        let outcome = match (&result, &flushed) {
                            (Err(_), _) => result,
                            (Ok(()), Err(e)) => Err(Error::Flush(e.to_string())),
                            (Ok(()), Ok(())) => Ok(()),
                        };
                        let _ = reply.send(outcome);
                    }
                }
            })
            .expect("the OS can start a thread");
        Self {
            requests,
            last_error,
        }
    }

    /// Applies `change` and returns once it is durable.
    pub async fn commit(&self, change: Change) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((change, reply))
            .map_err(|_| Error::WriterStopped)?;
        answer.await.map_err(|_| Error::WriterStopped)?
    }

    /// `Err` with the reason while the store cannot be written: the last batch failed
    /// (a full disk, an I/O error), and none has been written since.
    pub fn health(&self) -> Result<(), String> {
        match self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// The files sled writes, as laid out by sled 0.34: the data file `db` (every segment),
/// `conf`, snapshots `snap.*`, and `blobs/<lsn>` for values too large for a segment.
struct SledFiles {
    dir: PathBuf,
}

impl SledFiles {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// `fsync`s the data file, every blob and both directories (new files' entries).
    fn sync(&self) -> Result<()> {
        let io = |e: std::io::Error| Error::Flush(e.to_string());
        File::open(self.dir.join("db"))
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        let blobs = self.dir.join("blobs");
        // Usually empty: a value goes to a blob only past a quarter of a segment.
        for entry in std::fs::read_dir(&blobs).map_err(io)? {
            let path = entry.map_err(io)?.path();
            match File::open(&path).and_then(|f| f.sync_all()) {
                Ok(()) => {}
                // sled removed it meanwhile (a blob rewritten or garbage-collected).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        for dir in [&blobs, &self.dir] {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}
