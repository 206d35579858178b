//! Subscribers: loopback receivers (hookwire-testkit's [`Receiver`]) that verify every
//! signature and answer like a healthy, a flaky, a slow or a down endpoint.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use hookwire_core::{Secret, Subscription};
use hookwire_testkit::{Receiver, Recorded, Reply, new_subscription};
use rand::Rng;

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

/// Shared between the receiver's handler and the ledger. Only webhook-ids and counts are
/// kept, not the requests: a soak would otherwise hold a copy of every request.
#[derive(Debug, Default)]
struct State {
    /// While set, the endpoint answers 503 (an outage).
    down: AtomicBool,
    /// Requests whose signature or timestamp did not verify.
    bad_signatures: AtomicUsize,
    /// Requests received so far.
    received: AtomicUsize,
    /// Requests whose answer was handed to the connection.
    answered: AtomicUsize,
    /// Every webhook-id that arrived.
    requested: Mutex<HashSet<String>>,
    /// 2xx answers handed to the connection, by webhook-id.
    delivered: Mutex<HashMap<String, usize>>,
    /// 500s answered per webhook-id (Flaky, HalfWorking).
    failures: Mutex<HashMap<String, u32>>,
    /// When each webhook-id was first answered 2xx, once [`Sink::keep_times`] asked for
    /// it (off by default: a soak would keep one entry per delivery).
    first_delivered: Mutex<Option<HashMap<String, Instant>>>,
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
                move |_, req| respond(&secret, &state, behavior, req)
            },
            {
                let state = state.clone();
                move |_, req, status| {
                    state.answered.fetch_add(1, Ordering::SeqCst);
                    if (200..300).contains(&status) {
                        let id = req.header("webhook-id").to_owned();
                        if let Some(times) = state.first_delivered.lock().expect("lock").as_mut() {
                            times.entry(id.clone()).or_insert_with(Instant::now);
                        }
                        *state.delivered.lock().expect("lock").entry(id).or_insert(0) += 1;
                    }
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

    /// Keeps from now on when each webhook-id was first answered 2xx.
    pub fn keep_times(&self) {
        self.state
            .first_delivered
            .lock()
            .expect("lock")
            .get_or_insert_with(HashMap::new);
    }

    /// When `webhook_id` was first answered 2xx, if it was since [`Sink::keep_times`].
    pub fn first_delivered(&self, webhook_id: &str) -> Option<Instant> {
        self.state
            .first_delivered
            .lock()
            .expect("lock")
            .as_ref()?
            .get(webhook_id)
            .copied()
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
        self.state.received.load(Ordering::SeqCst)
    }

    /// Requests received but not answered yet: held open.
    pub fn in_flight(&self) -> usize {
        self.received()
            .saturating_sub(self.state.answered.load(Ordering::SeqCst))
    }

    /// Every webhook-id that reached this receiver.
    pub fn requested_ids(&self) -> HashSet<String> {
        self.state.requested.lock().expect("lock").clone()
    }

    /// 2xx answers handed to the connection, by webhook-id; locked while held.
    pub fn delivered(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.state.delivered.lock().expect("lock")
    }
}

fn respond(secret: &Secret, state: &State, behavior: Behavior, req: &Recorded) -> Reply {
    let id = req.header("webhook-id").to_owned();
    state.received.fetch_add(1, Ordering::SeqCst);
    state.requested.lock().expect("lock").insert(id.clone());
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
