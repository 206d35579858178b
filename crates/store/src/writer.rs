//! Group commit: writes that must be durable before someone is answered (API writes,
//! disabling a webhook) share one flush. The flush runs on a dedicated thread, off the
//! async workers.

use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::{Change, Error, Result, Store};

type Request = (Change, oneshot::Sender<Result<()>>);

/// Applies changes and answers once they are flushed. Clones share one writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    requests: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer thread for `store`. It ends when every clone is dropped.
    pub fn spawn(store: Store) -> Self {
        let (requests, inbox) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("hookwire-store-writer".into())
            .spawn(move || {
                while let Ok(first) = inbox.recv() {
                    // Everything queued behind the first request rides the same flush.
                    let batch: Vec<Request> =
                        std::iter::once(first).chain(inbox.try_iter()).collect();
                    let applied: Vec<(Result<()>, oneshot::Sender<Result<()>>)> = batch
                        .into_iter()
                        .map(|(change, reply)| (store.apply(change), reply))
                        .collect();
                    let flushed = store.flush();
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
        Self { requests }
    }

    /// Applies `change` and returns once it is durable.
    pub async fn commit(&self, change: Change) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((change, reply))
            .map_err(|_| Error::WriterStopped)?;
        answer.await.map_err(|_| Error::WriterStopped)?
    }
}
