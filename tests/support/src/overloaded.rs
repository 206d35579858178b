//! A receiver with a capacity, for testing how hookwire finds it: it answers 200 in
//! `base` up to `knee` requests in flight, `per_extra` later for each request in flight
//! past the knee, and 429 and 503 in turn (with `Retry-After`, at once) past `refuse_past`.
//! It counts what it answered and how many requests it had in flight at each arrival.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Receiver, Reply};

/// What the receiver takes.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Requests in flight it answers in `base`.
    pub knee: usize,
    /// Its answer time up to the knee.
    pub base: Duration,
    /// How much later it answers for each request in flight past the knee.
    pub per_extra: Duration,
    /// Past this many in flight, it answers 429 or 503 at once.
    pub refuse_past: usize,
    /// The `Retry-After` (seconds) of a refusal; `None` sends none.
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Default)]
struct Counts {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    ok: AtomicUsize,
    refused: AtomicUsize,
    /// Requests in flight at each arrival, this one included, in order of arrival.
    at_arrival: Mutex<Vec<usize>>,
}

/// A running receiver with a capacity; it stops when dropped.
#[derive(Debug)]
pub struct OverloadedReceiver {
    receiver: Receiver,
    counts: Arc<Counts>,
}

impl OverloadedReceiver {
    /// Starts one on a loopback port.
    pub async fn start(capacity: Capacity) -> Self {
        let counts = Arc::new(Counts::default());
        let arriving = counts.clone();
        let leaving = counts.clone();
        let receiver = Receiver::start_unlogged(
            move |n, _| {
                let now = arriving.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                arriving.peak.fetch_max(now, Ordering::SeqCst);
                arriving.at_arrival.lock().expect("lock").push(now);
                if now > capacity.refuse_past {
                    let status = if n % 2 == 0 { 429 } else { 503 };
                    let headers = capacity
                        .retry_after_secs
                        .map(|s| vec![("retry-after".to_owned(), s.to_string())])
                        .unwrap_or_default();
                    return Reply {
                        status,
                        headers,
                        delay: Duration::ZERO,
                    };
                }
                let extra = now.saturating_sub(capacity.knee) as u32;
                Reply {
                    status: 200,
                    headers: Vec::new(),
                    delay: capacity.base + capacity.per_extra * extra,
                }
            },
            move |_, _, status| {
                leaving.in_flight.fetch_sub(1, Ordering::SeqCst);
                let answered = if status == 200 {
                    &leaving.ok
                } else {
                    &leaving.refused
                };
                answered.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        Self { receiver, counts }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.receiver.url()
    }

    /// Requests answered 200.
    pub fn delivered(&self) -> usize {
        self.counts.ok.load(Ordering::SeqCst)
    }

    /// Requests answered 429 or 503.
    pub fn refused(&self) -> usize {
        self.counts.refused.load(Ordering::SeqCst)
    }

    /// The most requests it had in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.counts.peak.load(Ordering::SeqCst)
    }

    /// Requests in flight at each arrival (the arriving one included), in order.
    pub fn in_flight_at_arrivals(&self) -> Vec<usize> {
        self.counts.at_arrival.lock().expect("lock").clone()
    }
}
