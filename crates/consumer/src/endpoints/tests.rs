use super::*;

fn limits() -> EndpointLimits {
    EndpointLimits {
        per_endpoint_concurrency: 2,
        circuit: CircuitLimits {
            min_failures: 3,
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            cool_off: Duration::from_secs(10),
            half_open_trials: 2,
            prefer_attempted_for: Duration::from_secs(4),
            max_deferral: Duration::from_secs(60),
        },
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
