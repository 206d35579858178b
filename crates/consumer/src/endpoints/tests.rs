use super::*;

fn limits() -> EndpointLimits {
    EndpointLimits {
        per_endpoint_concurrency: 2,
        // Fixed caps here; the adaptive limit has tests of its own below and in `limiter`.
        adaptive: false,
        max_slot_wait: Duration::from_secs(1),
        max_short_wait: Duration::from_secs(5),
        circuit: CircuitLimits {
            min_failures: 3,
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            cool_off: Duration::from_secs(10),
            half_open_trials: 2,
            prefer_attempted_for: Duration::from_secs(4),
            max_deferral: Duration::from_secs(60),
        },
        max_held: 4,
    }
}

fn sub() -> Subscription {
    let secret = hookwire_core::Secret::from_bytes(vec![0; 32]).expect("key");
    Subscription::new("acme", "https://example.com/", "", vec![], secret, 0)
}

const FRESH: Candidate = Candidate {
    attempted: false,
    deferred_for: None,
};
const RETRY: Candidate = Candidate {
    attempted: true,
    deferred_for: None,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Opens `s`'s circuit at `t0` with three failures.
fn open(endpoints: &Endpoints, s: &Subscription, t0: Instant) {
    for _ in 0..3 {
        endpoints
            .admit(s, FRESH, t0)
            .expect("closed")
            .finish(false, t0);
    }
    assert_eq!(
        endpoints.snapshot(&s.id, t0).map(|c| c.state),
        Some(CircuitState::Open)
    );
}

#[test]
fn caps_in_flight_per_webhook_not_per_host() {
    let endpoints = Endpoints::new(limits());
    let (a, b) = (sub(), sub());
    let now = Instant::now();
    let first = endpoints.admit(&a, FRESH, now).expect("1st");
    let _second = endpoints.admit(&a, FRESH, now).expect("2nd");
    assert_eq!(
        endpoints.admit(&a, FRESH, now).err(),
        Some(Deferral::AtCapacity)
    );
    assert!(
        endpoints.admit(&b, FRESH, now).is_ok(),
        "another webhook on the same host is unaffected"
    );
    first.finish(true, now);
    assert!(
        endpoints.admit(&a, FRESH, now).is_ok(),
        "a finished attempt frees its slot"
    );
    let mut own_cap = sub();
    own_cap.max_concurrency = Some(1);
    let _only = endpoints.admit(&own_cap, FRESH, now).expect("1st");
    assert_eq!(
        endpoints.admit(&own_cap, FRESH, now).err(),
        Some(Deferral::AtCapacity)
    );
}

#[test]
fn the_circuit_opens_on_a_failure_rate_with_a_minimum_of_failures() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let t0 = Instant::now();
    // 1 in 2 fail, 2 of them: below the minimum of 3 failures.
    for ok in [true, false, true, false] {
        endpoints
            .admit(&s, FRESH, t0)
            .expect("closed")
            .finish(ok, t0);
    }
    // 3 failures of 7: below 50 %.
    for ok in [true, true, true] {
        endpoints
            .admit(&s, FRESH, t0)
            .expect("closed")
            .finish(ok, t0);
    }
    endpoints
        .admit(&s, FRESH, t0)
        .expect("closed")
        .finish(false, t0);
    let snap = endpoints.snapshot(&s.id, t0).expect("seen");
    assert_eq!(snap.state, CircuitState::Closed);
    assert!((snap.failure_rate - 0.375).abs() < 1e-9, "{snap:?}");
    // Once the window slid past those, 3 failures in a row are 100 %.
    let later = t0 + secs(11);
    for _ in 0..3 {
        endpoints
            .admit(&s, FRESH, later)
            .expect("closed")
            .finish(false, later);
    }
    assert_eq!(
        endpoints.admit(&s, FRESH, later + secs(4)).err(),
        Some(Deferral::CircuitOpen(secs(6)))
    );
}

#[test]
fn half_open_admits_several_trials_preferring_deliveries_already_attempted() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let t0 = Instant::now();
    open(&endpoints, &s, t0);
    let half = t0 + secs(10);
    assert_eq!(
        endpoints.admit(&s, FRESH, half).err(),
        Some(Deferral::CircuitOpen(secs(4))),
        "a fresh delivery waits while retries may come back"
    );
    let first = endpoints.admit(&s, RETRY, half).expect("trial 1");
    let second = endpoints.admit(&s, RETRY, half).expect("trial 2");
    assert_eq!(
        endpoints.admit(&s, RETRY, half).err(),
        Some(Deferral::CircuitOpen(Duration::ZERO)),
        "two trials at most"
    );
    first.finish(true, half);
    assert_eq!(
        endpoints.snapshot(&s.id, half).map(|c| c.state),
        Some(CircuitState::HalfOpen),
        "one success of two: undecided at 50 %"
    );
    second.finish(true, half);
    assert_eq!(
        endpoints.snapshot(&s.id, half).map(|c| c.state),
        Some(CircuitState::Closed)
    );
    assert!(endpoints.admit(&s, FRESH, half).is_ok());
}

#[test]
fn half_open_takes_fresh_deliveries_once_the_preference_is_over_and_reopens_on_failures() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let t0 = Instant::now();
    open(&endpoints, &s, t0);
    let half = t0 + secs(10);
    assert!(endpoints.admit(&s, FRESH, half).is_err());
    let later = half + secs(4);
    let trial = endpoints
        .admit(&s, FRESH, later)
        .expect("no retry came: a fresh one");
    trial.finish(false, later);
    assert_eq!(
        endpoints.admit(&s, RETRY, later).err(),
        Some(Deferral::CircuitOpen(secs(10))),
        "one failure of two trials is 50 %: open again"
    );
}

#[test]
fn a_delivery_deferred_past_the_bound_gets_an_attempt_without_a_verdict() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let t0 = Instant::now();
    open(&endpoints, &s, t0);
    let overdue = Candidate {
        attempted: false,
        deferred_for: Some(secs(60)),
    };
    let forced = endpoints.admit(&s, overdue, t0 + secs(1)).expect("forced");
    forced.finish(true, t0 + secs(1));
    assert_eq!(
        endpoints.snapshot(&s.id, t0 + secs(1)).map(|c| c.state),
        Some(CircuitState::Open),
        "the circuit follows its own trials"
    );
    let not_yet = Candidate {
        deferred_for: Some(secs(59)),
        ..overdue
    };
    assert!(endpoints.admit(&s, not_yet, t0 + secs(1)).is_err());
}

#[test]
fn dropping_is_neutral_and_frees_a_trial() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let t0 = Instant::now();
    for _ in 0..2 {
        endpoints
            .admit(&s, FRESH, t0)
            .expect("closed")
            .finish(false, t0);
    }
    drop(endpoints.admit(&s, FRESH, t0).expect("closed"));
    assert!(
        endpoints.admit(&s, FRESH, t0).is_ok(),
        "2 failures: still closed"
    );
    endpoints
        .admit(&s, FRESH, t0)
        .expect("closed")
        .finish(false, t0);
    let half = t0 + secs(10);
    let (a, b) = (
        endpoints.admit(&s, RETRY, half).expect("trial"),
        endpoints.admit(&s, RETRY, half).expect("trial"),
    );
    drop(a);
    let c = endpoints
        .admit(&s, RETRY, half)
        .expect("the dropped trial's place");
    b.finish(true, half);
    c.finish(true, half);
    assert_eq!(
        endpoints.snapshot(&s.id, half).map(|c| c.state),
        Some(CircuitState::Closed)
    );
}

#[test]
fn rate_limit_per_second() {
    let endpoints = Endpoints::new(limits());
    let mut s = sub();
    s.rate_limit_per_sec = Some(2);
    let now = Instant::now();
    endpoints
        .admit(&s, FRESH, now)
        .expect("1")
        .finish(true, now);
    endpoints
        .admit(&s, FRESH, now)
        .expect("2")
        .finish(true, now);
    assert_eq!(
        endpoints.admit(&s, FRESH, now).err(),
        Some(Deferral::RateLimited)
    );
    assert!(
        endpoints
            .admit(&s, FRESH, now + Duration::from_secs(1))
            .is_ok(),
        "a new second"
    );
}

/// A delivery deferred past the bound (`max_deferral`, 60 s).
const OVERDUE: Candidate = Candidate {
    attempted: false,
    deferred_for: Some(Duration::from_secs(61)),
};

/// Holds a delivery deferred since `since_ms` for `s`'s next slot on a task of its own;
/// the admission, once it comes, is sent with `since_ms` and kept until `release` fires.
fn hold(
    endpoints: &Endpoints,
    s: &Subscription,
    since_ms: u64,
    admitted: tokio::sync::mpsc::UnboundedSender<u64>,
    release: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (endpoints, s) = (endpoints.clone(), s.clone());
    tokio::spawn(async move {
        let admission = endpoints
            .wait_for_slot(&s, OVERDUE, since_ms, true)
            .await
            .expect("held");
        admitted.send(since_ms).expect("send");
        let mut release = release;
        let _ = release.wait_for(|r| *r).await;
        drop(admission);
    })
}

/// Waits until `n` deliveries are held.
async fn held(endpoints: &Endpoints, n: usize) {
    while endpoints.held() != n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn held_deliveries_take_freed_slots_longest_deferred_first_before_any_fresh_one() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let now = Instant::now();
    let first = endpoints.admit(&s, FRESH, now).expect("1st");
    let second = endpoints.admit(&s, FRESH, now).expect("2nd");
    let (tx, mut admitted) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = tokio::sync::watch::channel(false);
    // Held in another order than they were deferred.
    let mut waiters = Vec::new();
    for (i, since) in [300, 100, 200].into_iter().enumerate() {
        waiters.push(hold(&endpoints, &s, since, tx.clone(), released.clone()));
        held(&endpoints, i + 1).await;
    }
    drop(first);
    assert_eq!(
        admitted.recv().await,
        Some(100),
        "the longest deferred first"
    );
    assert_eq!(
        endpoints.admit(&s, FRESH, Instant::now()).err(),
        Some(Deferral::AtCapacity),
        "a fresh delivery never takes a slot while deliveries are held"
    );
    assert_eq!(
        endpoints.admit(&s, RETRY, Instant::now()).err(),
        Some(Deferral::AtCapacity)
    );
    drop(second);
    assert_eq!(admitted.recv().await, Some(200));
    assert!(admitted.try_recv().is_err(), "the cap is still a cap");
    release.send(true).expect("release");
    assert_eq!(admitted.recv().await, Some(300));
    for waiter in waiters {
        waiter.await.expect("joined");
    }
    assert_eq!(endpoints.held(), 0);
    endpoints
        .admit(&s, FRESH, Instant::now())
        .expect("nobody held: fresh deliveries take slots again");
}

#[tokio::test]
async fn no_more_than_max_held_wait_and_a_cancelled_one_gives_its_place_up() {
    let endpoints = Endpoints::new(EndpointLimits {
        per_endpoint_concurrency: 1,
        ..limits()
    });
    let s = sub();
    let busy = endpoints.admit(&s, FRESH, Instant::now()).expect("1st");
    let (tx, mut admitted) = tokio::sync::mpsc::unbounded_channel();
    let (_release, released) = tokio::sync::watch::channel(false);
    // The oldest is cancelled while it waits.
    let cancelled = hold(&endpoints, &s, 1, tx.clone(), released.clone());
    held(&endpoints, 1).await;
    let mut waiters = Vec::new();
    for (i, since) in [2, 3, 4].into_iter().enumerate() {
        waiters.push(hold(&endpoints, &s, since, tx.clone(), released.clone()));
        held(&endpoints, i + 2).await;
    }
    assert_eq!(
        endpoints.wait_for_slot(&s, OVERDUE, 0, true).await.err(),
        Some(Deferral::AtCapacity),
        "max_held (4) are held: park it instead"
    );
    // A short wait (it ends within max_short_wait) is not counted against it.
    let short = {
        let (endpoints, s) = (endpoints.clone(), s.clone());
        tokio::spawn(async move { endpoints.wait_for_slot(&s, FRESH, 5, false).await.map(drop) })
    };
    held(&endpoints, 5).await;
    short.abort();
    held(&endpoints, 4).await;
    cancelled.abort();
    held(&endpoints, 3).await;
    drop(busy);
    assert_eq!(
        admitted.recv().await,
        Some(2),
        "the next in line after the cancelled one"
    );
    for waiter in waiters {
        waiter.abort();
    }
}

#[tokio::test]
async fn a_held_delivery_takes_the_next_rate_window_before_any_fresh_one() {
    let endpoints = Endpoints::new(limits());
    let mut s = sub();
    s.rate_limit_per_sec = Some(1);
    let now = Instant::now();
    drop(
        endpoints
            .admit(&s, FRESH, now)
            .expect("this second's delivery"),
    );
    assert_eq!(
        endpoints.admit(&s, FRESH, now).err(),
        Some(Deferral::RateLimited)
    );
    let (tx, mut admitted) = tokio::sync::mpsc::unbounded_channel();
    let (_release, released) = tokio::sync::watch::channel(false);
    let waiter = hold(&endpoints, &s, 7, tx, released);
    held(&endpoints, 1).await;
    assert_eq!(
        endpoints.admit(&s, FRESH, now + secs(2)).err(),
        Some(Deferral::AtCapacity),
        "a new window, but it is the held delivery's"
    );
    assert_eq!(admitted.recv().await, Some(7));
    waiter.abort();
}

#[tokio::test]
async fn the_adaptive_limit_admits_its_limit_and_a_retry_after_pauses_the_webhook() {
    let endpoints = Endpoints::new(EndpointLimits {
        per_endpoint_concurrency: 256,
        adaptive: true,
        ..limits()
    });
    let s = sub();
    let t0 = Instant::now();
    let mut admitted: Vec<Admission> = (0..limiter::INITIAL_LIMIT)
        .map(|_| endpoints.admit(&s, FRESH, t0).expect("within the limit"))
        .collect();
    assert_eq!(
        endpoints.admit(&s, FRESH, t0).err(),
        Some(Deferral::AtCapacity)
    );
    let snapshot = endpoints.snapshot(&s.id, t0).expect("seen");
    assert_eq!((snapshot.concurrency_limit, snapshot.in_flight), (8, 8));
    let asks = Signal::Overloaded {
        retry_after: Some(secs(2)),
    };
    admitted.pop().expect("one").finish_with(false, asks, t0);
    assert_eq!(
        endpoints.admit(&s, FRESH, t0).err(),
        Some(Deferral::RetryAfter(secs(2))),
        "paused, though a slot is free"
    );
    assert_eq!(
        endpoints.expected_wait(&s, Deferral::RetryAfter(secs(2)), t0),
        Some(secs(2))
    );
    let later = t0 + secs(2);
    assert_eq!(
        endpoints.admit(&s, FRESH, later).err(),
        Some(Deferral::AtCapacity),
        "halved to 4, with 7 still in flight"
    );
    admitted.truncate(3);
    let fourth = endpoints.admit(&s, FRESH, later).expect("3 in flight of 4");
    assert_eq!(
        endpoints
            .snapshot(&s.id, later)
            .map(|c| c.concurrency_limit),
        Some(4)
    );
    drop(fourth);
}

#[test]
fn an_open_circuit_is_never_a_short_wait() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let t0 = Instant::now();
    open(&endpoints, &s, t0);
    let deferral = endpoints.admit(&s, FRESH, t0).expect_err("deferred");
    assert!(matches!(deferral, Deferral::CircuitOpen(_)));
    assert_eq!(endpoints.expected_wait(&s, deferral, t0), None);
}

#[test]
fn a_receiver_whose_retries_succeed_is_not_held_back_by_failing_first_attempts() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let t0 = Instant::now();
    // It fails every first attempt, so at first nothing but failures: the circuit opens.
    open(&endpoints, &s, t0);
    // The half-open trials are retries (preferred), and succeed: it closes.
    let after = t0 + secs(10);
    for _ in 0..2 {
        endpoints
            .admit(&s, RETRY, after)
            .expect("a trial")
            .finish(true, after);
    }
    assert_eq!(
        endpoints.snapshot(&s.id, after).map(|c| c.state),
        Some(CircuitState::Closed)
    );
    // Fresh deliveries keep failing their first attempt, their retries keep succeeding:
    // it stays closed.
    for i in 0..20 {
        let now = after + Duration::from_millis(100 * i);
        endpoints
            .admit(&s, FRESH, now)
            .expect("closed")
            .finish(false, now);
        endpoints
            .admit(&s, RETRY, now)
            .expect("closed")
            .finish(true, now);
    }
    let end = after + secs(2);
    assert_eq!(
        endpoints.snapshot(&s.id, end).map(|c| c.state),
        Some(CircuitState::Closed)
    );
}

#[test]
fn a_receiver_that_fails_its_retries_too_is_still_cut_off() {
    let endpoints = Endpoints::new(limits());
    let s = sub();
    let t0 = Instant::now();
    for candidate in [FRESH, RETRY, FRESH, RETRY] {
        if let Ok(admission) = endpoints.admit(&s, candidate, t0) {
            admission.finish(false, t0);
        }
    }
    assert!(matches!(
        endpoints.admit(&s, FRESH, t0).err(),
        Some(Deferral::CircuitOpen(_))
    ));
}

#[tokio::test]
async fn a_short_wait_goes_on_while_its_place_is_served_soon_and_ends_at_its_bound() {
    let endpoints = Endpoints::new(EndpointLimits {
        per_endpoint_concurrency: 1,
        max_slot_wait: Duration::from_millis(300),
        max_short_wait: Duration::from_millis(900),
        ..limits()
    });
    let s = sub();
    let short = |since_ms| {
        let (endpoints, s) = (endpoints.clone(), s.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let waited = endpoints.wait_for_slot(&s, FRESH, since_ms, false).await;
            (waited.map(drop), started.elapsed())
        })
    };
    // An answer in 200 ms is known: one slot serves one delivery per 200 ms.
    let t = Instant::now();
    let first = endpoints.admit(&s, FRESH, t).expect("free");
    first.finish_with(true, Signal::Answered(Duration::from_millis(200)), t);
    let busy = endpoints.admit(&s, FRESH, Instant::now()).expect("free");

    let next = short(1);
    let third = short(3);
    held(&endpoints, 2).await;
    // Past max_slot_wait, the second in line expects 400 ms: parked; the first, 200 ms,
    // waits on, and takes the slot freed after 500 ms.
    let (waited, after) = third.await.expect("joined");
    assert_eq!(waited.err(), Some(Deferral::AtCapacity));
    assert!(after >= Duration::from_millis(300) && after < Duration::from_millis(800));
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(after)).await;
    drop(busy);
    let (waited, after) = next.await.expect("joined");
    assert!(waited.is_ok(), "admitted after {after:?}");

    // A slot that never frees: the wait ends at max_short_wait.
    let _busy = endpoints.admit(&s, FRESH, Instant::now()).expect("free");
    let (waited, after) = short(5).await.expect("joined");
    assert_eq!(waited.err(), Some(Deferral::AtCapacity));
    assert!(after >= Duration::from_millis(900), "{after:?}");
}
