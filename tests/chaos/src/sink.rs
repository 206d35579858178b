//! Subscribers: loopback receivers (hookwire-testkit's [`Receiver`]) that verify every
//! signature and answer like a healthy, a flaky, a slow or a down endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use hookwire_core::{Secret, Subscription};
use hookwire_testkit::{Receiver, Recorded, Reply, new_subscription};
use rand::Rng;

use crate::receiver_log::{Mark, ReceiverLog};

/// How a subscriber answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// 200 at once.
    Healthy,
    /// 500 to about 30 % of requests, but at most twice per webhook-id, so the retry
    /// schedule never runs out and an `exhausted` dead letter is always a bug.
    Flaky,
    /// 200 after 0.2–2 s: requests are held open when serve is killed.
    Slow,
    /// 500 to the first request of every webhook-id, 200 to the rest: a receiver behind a
    /// load balancer with one bad instance. It runs at a 50 % failure rate, and after a
    /// restart's burst at 100 %, which the circuit must not turn into starvation.
    HalfWorking,
}

/// Shared between the receiver's handler and the ledger. Only webhook-ids and the times
/// of 2xx answers are kept, not the requests: a soak would otherwise hold a copy of every
/// request.
#[derive(Debug, Default)]
struct State {
    /// While set, the endpoint answers 503 (an outage).
    down: AtomicBool,
    /// Requests whose signature or timestamp did not verify.
    bad_signatures: AtomicUsize,
    /// What the ledger reads. Request starts, answers and disturbances are timed under
    /// its lock, so that a disturbance's open requests are exactly those it overlapped.
    log: Mutex<ReceiverLog>,
    /// 500s answered per webhook-id (Flaky, HalfWorking).
    failures: Mutex<HashMap<String, u32>>,
}

/// One subscriber: its subscription (with the secret it verifies) and its receiver.
#[derive(Debug)]
pub struct Sink {
    /// The subscription to seed.
    pub sub: Subscription,
    _receiver: Receiver,
    state: Arc<State>,
}

impl Sink {
    /// A receiver answering like `behavior`, subscribed by `org` to `events`.
    pub async fn start(
        name: &'static str,
        org: &str,
        events: &[&str],
        behavior: Behavior,
    ) -> Result<Self> {
        let secret = Secret::generate()?;
        let state = Arc::new(State::default());
        let receiver = Receiver::start_unlogged(
            {
                let (secret, state) = (secret.clone(), state.clone());
                move |n, req| respond(&secret, &state, behavior, n, req)
            },
            {
                let state = state.clone();
                move |n, _, status| {
                    let mut log = state.log.lock().expect("lock");
                    log.answer(n, status, Instant::now());
                }
            },
        )
        .await;
        let mut sub = new_subscription(org, &receiver.url(), events);
        sub.description = format!("hookwire-chaos {name}");
        sub.keys[0].secret = secret;
        Ok(Self {
            sub,
            _receiver: receiver,
            state,
        })
    }

    /// When `webhook_id` was first answered 2xx, if it was.
    pub fn first_delivered(&self, webhook_id: &str) -> Option<Instant> {
        self.log().pairs.get(webhook_id)?.first_delivered()
    }

    /// Starts (`true`) or ends an outage: every request is answered 503 meanwhile.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Requests whose signature did not verify.
    pub fn bad_signatures(&self) -> usize {
        self.state.bad_signatures.load(Ordering::SeqCst)
    }

    /// Requests received so far (answered or not).
    pub fn received(&self) -> usize {
        self.log().received
    }

    /// Requests received but not answered yet: held open.
    pub fn in_flight(&self) -> usize {
        self.log().open()
    }

    /// What this receiver saw; locked while held.
    pub fn log(&self) -> MutexGuard<'_, ReceiverLog> {
        self.state.log.lock().expect("lock")
    }
}

/// A disturbance under way: SIGKILL (once serve is reaped, until it is started again), a
/// broker restart or connection close (from before the command until serve consumes
/// again). Every receiver of the scenario is told, and classifies its duplicates by it.
#[derive(Debug)]
pub struct Disturbing<'a> {
    marks: Vec<(&'a Sink, Mark)>,
}

impl<'a> Disturbing<'a> {
    /// A disturbance begins now.
    pub fn begin(sinks: &[&'a Sink]) -> Self {
        let marks = sinks
            .iter()
            .map(|s| (*s, s.log().begin(Instant::now())))
            .collect();
        Self { marks }
    }

    /// It ends now.
    pub fn end(self) {
        for (sink, mark) in self.marks {
            sink.log().end(mark, Instant::now());
        }
    }
}

fn respond(secret: &Secret, state: &State, behavior: Behavior, n: usize, req: &Recorded) -> Reply {
    let id = req.header("webhook-id").to_owned();
    {
        let mut log = state.log.lock().expect("lock");
        log.request(n, &id, Instant::now());
    }
    let verified = req
        .header("webhook-timestamp")
        .parse::<u64>()
        .ok()
        .filter(|ts| hookwire_core::now_ms() / 1000 <= ts + 300)
        .is_some_and(|ts| {
            secret
                .verify(&id, ts, &req.body, req.header("webhook-signature"))
                .is_ok()
        });
    let mut delay = Duration::ZERO;
    let status = if !verified {
        state.bad_signatures.fetch_add(1, Ordering::SeqCst);
        // A permanent status: it ends as a dead letter, which fails the verdict.
        400
    } else if state.down.load(Ordering::SeqCst) {
        503
    } else {
        match behavior {
            Behavior::Healthy => 200,
            Behavior::Flaky => {
                let mut failures = state.failures.lock().expect("lock");
                let n = failures.entry(id).or_insert(0);
                if *n < 2 && rand::rng().random_bool(0.3) {
                    *n += 1;
                    500
                } else {
                    200
                }
            }
            Behavior::HalfWorking => {
                let mut failures = state.failures.lock().expect("lock");
                let n = failures.entry(id).or_insert(0);
                if *n == 0 {
                    *n += 1;
                    500
                } else {
                    200
                }
            }
            Behavior::Slow => {
                delay = Duration::from_millis(rand::rng().random_range(200..2000));
                200
            }
        }
    };
    Reply {
        status,
        headers: Vec::new(),
        delay,
    }
}
