//! The global attempt slots (`delivery.concurrency`), shared fairly between organizations.
//!
//! While a slot is free and nobody waits, taking one is a lock and a decrement. Once
//! attempts wait, a freed slot is handed over round-robin across the organizations with
//! work waiting (first come, first served within one), so an organization flooding slow
//! receivers delays another's attempts by one slot's turn, not by its whole backlog.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

#[derive(Debug)]
pub(crate) struct FairPermits {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Slots nobody holds. Never above 0 while anyone waits: a freed slot goes to a waiter.
    free: usize,
    /// Each waiting organization's waiters, oldest first.
    waiting: HashMap<String, VecDeque<oneshot::Sender<()>>>,
    /// Organizations with waiters, in the order their turns come.
    turns: VecDeque<String>,
}

/// One slot; dropping it frees the slot for the next turn.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    permits: &'a FairPermits,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.permits.release();
    }
}

/// A waiter that may be cancelled (its attempt's future dropped): a slot handed to it
/// after that goes on to the next turn.
struct Waiter<'a> {
    permits: &'a FairPermits,
    handed: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(mut handed) = self.handed.take() {
            handed.close();
            if handed.try_recv().is_ok() {
                self.permits.release();
            }
        }
    }
}

impl FairPermits {
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            state: Mutex::new(State {
                free: slots,
                waiting: HashMap::new(),
                turns: VecDeque::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain counters and queues: still consistent after a panic elsewhere.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a slot for an attempt of `org`.
    pub(crate) async fn acquire(&self, org: &str) -> Permit<'_> {
        let handed = {
            let mut state = self.state();
            if state.free > 0 {
                state.free -= 1;
                return Permit { permits: self };
            }
            let (hand, handed) = oneshot::channel();
            let queue = state.waiting.entry(org.to_owned()).or_default();
            let first = queue.is_empty();
            queue.push_back(hand);
            if first {
                state.turns.push_back(org.to_owned());
            }
            handed
        };
        let mut waiter = Waiter {
            permits: self,
            handed: Some(handed),
        };
        let handed = waiter.handed.as_mut().expect("set above");
        // The sender is only dropped after a send, so this cannot fail.
        let _ = handed.await;
        waiter.handed = None;
        Permit { permits: self }
    }

    /// Hands a freed slot to the next organization's oldest live waiter, or frees it.
    fn release(&self) {
        let mut state = self.state();
        while let Some(org) = state.turns.pop_front() {
            let Some(queue) = state.waiting.get_mut(&org) else {
                continue;
            };
            let hand = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&org);
            } else {
                state.turns.push_back(org);
            }
            // A send fails only to a cancelled waiter: try the next turn.
            if hand.is_some_and(|hand| hand.send(()).is_ok()) {
                return;
            }
        }
        state.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_freed_slot_goes_round_robin_across_waiting_orgs() {
        let permits = FairPermits::new(1);
        let held = permits.acquire("a").await;
        let order = std::sync::Mutex::new(Vec::new());
        let waiter = |org: &'static str| {
            let (permits, order) = (&permits, &order);
            async move {
                let _permit = permits.acquire(org).await;
                order.lock().expect("lock").push(org);
                tokio::task::yield_now().await;
            }
        };
        let all = async {
            tokio::join!(
                waiter("a"),
                waiter("a"),
                waiter("a"),
                waiter("b"),
                waiter("b")
            )
        };
        let release = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(held);
        };
        tokio::join!(all, release);
        assert_eq!(*order.lock().expect("lock"), ["a", "b", "a", "b", "a"]);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_passes_its_slot_on() {
        let permits = FairPermits::new(1);
        let held = permits.acquire("a").await;
        {
            let cancelled = permits.acquire("a");
            tokio::pin!(cancelled);
            assert!(
                tokio::time::timeout(Duration::from_millis(5), &mut cancelled)
                    .await
                    .is_err()
            );
        }
        drop(held);
        let _again = tokio::time::timeout(Duration::from_secs(1), permits.acquire("b"))
            .await
            .expect("the slot was not lost to the cancelled waiter");
    }
}
