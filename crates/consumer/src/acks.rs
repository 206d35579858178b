//! Acks for one consumer channel, sent by one task that coalesces them.
//!
//! Handlers finish out of order. Whatever has finished within [`LINGER`] of the first tag
//! the task wakes for is acked together: the settled run at the bottom of the channel's
//! delivery tags as one `multiple` ack, each tag above the first unfinished one on its
//! own. So a slow delivery holds no other ack back (the prefetch window keeps moving),
//! and under load one frame, and one settle in the broker's queue, covers many messages
//! instead of one each.

use std::collections::BTreeSet;
use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long the task gathers finished tags before acking them. Each ack frame is one
/// settle command in the quorum queue's log, and one wake of lapin's I/O thread; this
/// delays no delivery, only its ack, within the prefetch window.
const LINGER: Duration = Duration::from_millis(1);

/// One ack frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) tag: u64,
    pub(crate) multiple: bool,
}

/// Which of a channel's delivery tags are settled, and which are finished but not acked.
///
/// RabbitMQ numbers a channel's deliveries 1, 2, 3, … and only this consumer takes
/// deliveries on the channel, so `floor` (every tag up to it is acked) can only move over
/// tags this book has seen finish. A tag that never finishes (its handler failed) keeps
/// the floor below it forever: no `multiple` ack ever covers it.
#[derive(Debug, Default)]
pub(crate) struct AckBook {
    floor: u64,
    /// Finished, not acked yet.
    finished: BTreeSet<u64>,
    /// Above the floor, already acked on their own.
    acked: BTreeSet<u64>,
}

impl AckBook {
    pub(crate) fn finish(&mut self, tag: u64) {
        if tag > self.floor {
            self.finished.insert(tag);
        }
    }

    /// `tag` was settled by a nack of its own: the floor may pass it, no ack covers it.
    pub(crate) fn nacked(&mut self, tag: u64) {
        if tag > self.floor {
            self.acked.insert(tag);
        }
    }

    /// The frames that ack everything finished so far; afterwards nothing is pending.
    pub(crate) fn take(&mut self) -> Vec<Ack> {
        let mut acks = Vec::new();
        let mut run_top = None;
        loop {
            let next = self.floor + 1;
            if self.finished.remove(&next) {
                run_top = Some(next);
            } else if !self.acked.remove(&next) {
                break;
            }
            self.floor = next;
        }
        // The top of the run is finished but not acked: the broker still holds it, which
        // a `multiple` ack requires of its tag.
        if let Some(tag) = run_top {
            acks.push(Ack {
                tag,
                multiple: true,
            });
        }
        for tag in std::mem::take(&mut self.finished) {
            acks.push(Ack {
                tag,
                multiple: false,
            });
            self.acked.insert(tag);
        }
        acks
    }
}

/// How one message is settled.
#[derive(Debug, Clone, Copy)]
enum Settle {
    /// Handled: ack it, coalesced with others.
    Ack(u64),
    /// Not handled: nack it alone, back to its queue or (without requeue) to its
    /// dead-letter exchange.
    Nack { tag: u64, requeue: bool },
}

/// Hands settled delivery tags to the channel's ack task.
#[derive(Debug, Clone)]
pub(crate) struct Acks {
    finished: mpsc::UnboundedSender<Settle>,
}

impl Acks {
    /// Starts the ack task of `channel`. It ends once every `Acks` is dropped and what
    /// they handed over is acked; a failed ack cancels `broken` (the session is over, and
    /// the broker redelivers what was not acked).
    pub(crate) fn spawn(channel: Channel, broken: CancellationToken) -> (Self, JoinHandle<()>) {
        let (finished, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ack_loop(channel, rx, broken));
        (Self { finished }, task)
    }

    /// The message of `tag` is handled: ack it soon.
    pub(crate) fn finish(&self, tag: u64) {
        // The task only stops early after a failed ack, when the session is broken.
        let _ = self.finished.send(Settle::Ack(tag));
    }

    /// The message of `tag` goes back to its queue (`requeue`), or to its queue's
    /// dead-letter exchange.
    pub(crate) fn nack(&self, tag: u64, requeue: bool) {
        let _ = self.finished.send(Settle::Nack { tag, requeue });
    }
}

async fn ack_loop(
    channel: Channel,
    mut rx: mpsc::UnboundedReceiver<Settle>,
    broken: CancellationToken,
) {
    let mut book = AckBook::default();
    while let Some(first) = rx.recv().await {
        let mut round = vec![first];
        tokio::time::sleep(LINGER).await;
        // Whatever finished meanwhile goes in the same round.
        while let Ok(settle) = rx.try_recv() {
            round.push(settle);
        }
        for settle in round {
            match settle {
                Settle::Ack(tag) => book.finish(tag),
                Settle::Nack { tag, requeue } => {
                    // Sent before the round's acks, so that no `multiple` ack covers it.
                    let options = BasicNackOptions {
                        multiple: false,
                        requeue,
                    };
                    if let Err(e) = channel.basic_nack(tag, options).await {
                        warn!(error = %e, "A nack could not be sent; unacked messages will be redelivered.");
                        broken.cancel();
                        return;
                    }
                    book.nacked(tag);
                }
            }
        }
        let sends = book.take().into_iter().map(|ack| {
            channel.basic_ack(
                ack.tag,
                BasicAckOptions {
                    multiple: ack.multiple,
                },
            )
        });
        if let Err(e) = futures_util::future::try_join_all(sends).await {
            warn!(error = %e, "An ack could not be sent; unacked messages will be redelivered.");
            broken.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multiple(tag: u64) -> Ack {
        Ack {
            tag,
            multiple: true,
        }
    }

    fn single(tag: u64) -> Ack {
        Ack {
            tag,
            multiple: false,
        }
    }

    fn finish(book: &mut AckBook, tags: &[u64]) -> Vec<Ack> {
        for &tag in tags {
            book.finish(tag);
        }
        book.take()
    }

    #[test]
    fn a_settled_run_is_one_multiple_ack() {
        let mut book = AckBook::default();
        assert_eq!(finish(&mut book, &[3, 1, 2]), [multiple(3)]);
        assert_eq!(finish(&mut book, &[4]), [multiple(4)]);
        assert_eq!(finish(&mut book, &[]), []);
    }

    #[test]
    fn tags_above_an_unfinished_one_are_acked_alone_and_never_twice() {
        let mut book = AckBook::default();
        // 2 is slow: 1 goes as the run, 3 and 5 on their own.
        assert_eq!(
            finish(&mut book, &[1, 3, 5]),
            [multiple(1), single(3), single(5)]
        );
        // 4 finishes: 3 and 5 are already acked, so the run 2..=5 has nothing to send.
        assert_eq!(finish(&mut book, &[4]), [single(4)]);
        // 2 finishes: the run reaches 6; one multiple ack covers 2 and 6, the only
        // ones the broker still holds.
        assert_eq!(finish(&mut book, &[2, 6]), [multiple(6)]);
        assert_eq!(book.floor, 6);
        assert!(book.acked.is_empty() && book.finished.is_empty());
    }

    #[test]
    fn a_run_top_already_acked_is_not_acked_again() {
        let mut book = AckBook::default();
        assert_eq!(finish(&mut book, &[2]), [single(2)]);
        // 1 closes the run 1..=2; the multiple ack goes to 1, the top the broker holds.
        assert_eq!(finish(&mut book, &[1]), [multiple(1)]);
        assert_eq!(book.floor, 2);
    }

    #[test]
    fn a_tag_that_never_finishes_is_never_covered() {
        let mut book = AckBook::default();
        let mut sent = Vec::new();
        for tag in (1..=100).filter(|&t| t != 40) {
            sent.extend(finish(&mut book, &[tag]));
        }
        assert!(
            sent.iter()
                .all(|a| if a.multiple { a.tag < 40 } else { a.tag != 40 })
        );
        let acked: BTreeSet<u64> = sent
            .iter()
            .flat_map(|a| if a.multiple { 1..=a.tag } else { a.tag..=a.tag })
            .collect();
        assert_eq!(acked.len(), 99);
    }

    #[test]
    fn a_nacked_tag_lets_the_floor_pass_and_is_never_acked() {
        let mut book = AckBook::default();
        assert_eq!(finish(&mut book, &[1, 3]), [multiple(1), single(3)]);
        book.nacked(2);
        // 2 was nacked on its own: the floor passes it, and the next run starts at 4.
        assert_eq!(finish(&mut book, &[4]), [multiple(4)]);
        assert_eq!(book.floor, 4);
        assert!(book.acked.is_empty());
    }
}
