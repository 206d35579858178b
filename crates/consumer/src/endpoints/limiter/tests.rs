use super::*;

const CEILING: usize = 256;
const NO_PAUSE_MAX: Duration = Duration::from_secs(300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A receiver that answers in 5 ms up to 16 at once, then 5 ms more for each extra one.
fn knee_16(in_flight: usize) -> Duration {
    ms(5 + 5 * in_flight.saturating_sub(16) as u64)
}

/// Runs `rounds` rounds in which the limit is always used up and the receiver answers
/// every attempt in `latency(limit)`; returns the limit after each round.
fn saturated_rounds(
    limiter: &mut Limiter,
    rounds: usize,
    ceiling: usize,
    latency: impl Fn(usize) -> Duration,
    t: &mut Instant,
) -> Vec<usize> {
    let mut seen = Vec::new();
    for _ in 0..rounds {
        let limit = limiter.limit(ceiling);
        let generation = limiter.generation();
        limiter.saturated();
        for _ in 0..limit {
            *t += latency(limit) / limit as u32;
            let answered = Signal::Answered(latency(limit));
            limiter.record(answered, generation, ceiling, NO_PAUSE_MAX, *t);
        }
        seen.push(limiter.limit(ceiling));
    }
    seen
}

#[test]
fn a_receiver_that_never_slows_down_gets_the_ceiling_by_doubling_each_round() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    assert_eq!(limiter.limit(CEILING), INITIAL_LIMIT);
    let seen = saturated_rounds(&mut limiter, 7, CEILING, |_| ms(100), &mut t);
    assert_eq!(seen, [16, 32, 64, 128, 256, 256, 256]);
}

#[test]
fn a_webhooks_ceiling_is_never_passed_and_a_lower_one_applies_at_once() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, 12, t);
    assert_eq!(limiter.limit(12), 8);
    let seen = saturated_rounds(&mut limiter, 3, 12, |_| ms(100), &mut t);
    assert_eq!(seen, [12, 12, 12]);
    assert_eq!(limiter.limit(3), 3, "a ceiling lowered since");
    assert_eq!(
        Limiter::new(true, 2, t).limit(2),
        2,
        "starts at most at the ceiling"
    );
}

#[test]
fn a_limit_that_is_never_reached_does_not_grow() {
    let t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    for _ in 0..100 {
        limiter.record(Signal::Answered(ms(10)), 0, CEILING, NO_PAUSE_MAX, t);
    }
    assert_eq!(limiter.limit(CEILING), INITIAL_LIMIT);
}

#[test]
fn settles_within_a_quarter_of_a_receivers_knee() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    let seen = saturated_rounds(&mut limiter, 200, CEILING, knee_16, &mut t);
    let settled = &seen[20..];
    assert!(
        settled.iter().all(|l| (12..=20).contains(l)),
        "limits after slow start: {settled:?}"
    );
    let mean = settled.iter().sum::<usize>() as f64 / settled.len() as f64;
    assert!((13.0..=18.0).contains(&mean), "mean limit {mean}");
}

#[test]
fn a_slower_round_within_the_noise_floor_is_not_queueing() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    // 0.2 ms unloaded, 4 ms loaded: twenty times slower, but less than MIN_QUEUEING more.
    saturated_rounds(
        &mut limiter,
        1,
        CEILING,
        |_| Duration::from_micros(200),
        &mut t,
    );
    let seen = saturated_rounds(&mut limiter, 3, CEILING, |_| ms(4), &mut t);
    assert_eq!(seen, [32, 64, 128]);
}

#[test]
fn queueing_ends_slow_start_and_later_growth_is_by_a_tenth() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    saturated_rounds(&mut limiter, 1, CEILING, |_| ms(10), &mut t);
    assert_eq!(limiter.limit(CEILING), 16);
    let seen = saturated_rounds(&mut limiter, 1, CEILING, |_| ms(50), &mut t);
    assert_eq!(seen, [12], "16 × 0.8");
    let seen = saturated_rounds(&mut limiter, 3, CEILING, |_| ms(10), &mut t);
    assert_eq!(seen, [14, 15, 17], "12.8 × 1.1 each round");
}

#[test]
fn overload_halves_the_limit_once_for_the_attempts_then_in_flight() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    saturated_rounds(&mut limiter, 3, CEILING, |_| ms(10), &mut t);
    assert_eq!(limiter.limit(CEILING), 64);
    let admitted_before = limiter.generation();
    let overloaded = Signal::Overloaded { retry_after: None };
    assert_eq!(
        limiter.record(overloaded, admitted_before, CEILING, NO_PAUSE_MAX, t),
        Some(32)
    );
    for _ in 0..20 {
        limiter.record(overloaded, admitted_before, CEILING, NO_PAUSE_MAX, t);
    }
    assert_eq!(limiter.limit(CEILING), 32, "same generation: judged once");
    limiter.record(overloaded, limiter.generation(), CEILING, NO_PAUSE_MAX, t);
    assert_eq!(limiter.limit(CEILING), 16, "admitted after the decrease");
    for _ in 0..10 {
        limiter.record(overloaded, limiter.generation(), CEILING, NO_PAUSE_MAX, t);
    }
    assert_eq!(limiter.limit(CEILING), 1, "never below one");
    let seen = saturated_rounds(&mut limiter, 2, CEILING, |_| ms(10), &mut t);
    assert_eq!(seen, [1, 1], "1 × 1.1 is still 1");
    let seen = saturated_rounds(&mut limiter, 8, CEILING, |_| ms(10), &mut t);
    assert_eq!(*seen.last().unwrap(), 2, "but it adds up");
}

#[test]
fn retry_after_pauses_the_webhook_within_the_bound_and_never_shortens_a_pause() {
    let t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    assert_eq!(limiter.paused_for(t), None);
    let asks = |secs| Signal::Overloaded {
        retry_after: Some(Duration::from_secs(secs)),
    };
    limiter.record(asks(3), 0, CEILING, NO_PAUSE_MAX, t);
    assert_eq!(limiter.paused_for(t), Some(Duration::from_secs(3)));
    limiter.record(asks(1), 0, CEILING, NO_PAUSE_MAX, t);
    assert_eq!(limiter.paused_for(t), Some(Duration::from_secs(3)));
    assert_eq!(limiter.paused_for(t + Duration::from_secs(3)), None);
    limiter.record(asks(3600), 0, CEILING, NO_PAUSE_MAX, t);
    assert_eq!(limiter.paused_for(t), Some(NO_PAUSE_MAX), "bounded");
}

#[test]
fn a_receiver_whose_answers_vary_whatever_its_load_is_not_held_back() {
    // Answers in 0.2 to 2 s at random, however many are in flight (a slow receiver, not
    // an overloaded one): single answers ten times apart, round means close together.
    let seed = std::cell::Cell::new(0x2545_f491_4f6c_dd1d_u64);
    let random_latency = |_| {
        let mut x = seed.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seed.set(x);
        ms(200 + x % 1801)
    };
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    let seen = saturated_rounds(&mut limiter, 40, CEILING, random_latency, &mut t);
    assert!(seen[10..].iter().all(|l| *l == CEILING), "limits: {seen:?}");
}

#[test]
fn a_receiver_slower_for_good_is_judged_by_its_new_pace_within_two_windows() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    saturated_rounds(&mut limiter, 2, CEILING, |_| ms(10), &mut t);
    // From now on 100 ms whatever the load: queueing against the old 10 ms at first.
    let seen = saturated_rounds(&mut limiter, 2, CEILING, |_| ms(100), &mut t);
    assert!(seen[1] < 32, "{seen:?}");
    t += BASE_WINDOW * 2;
    let before = limiter.limit(CEILING);
    let seen = saturated_rounds(&mut limiter, 2, CEILING, |_| ms(100), &mut t);
    assert!(seen[1] > before, "grows again: {before} then {seen:?}");
}

#[test]
fn without_adaptation_the_limit_is_the_ceiling_whatever_happens() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(false, 8, t);
    assert_eq!(limiter.limit(8), 8);
    saturated_rounds(&mut limiter, 5, 8, knee_16, &mut t);
    let overloaded = Signal::Overloaded {
        retry_after: Some(Duration::from_secs(2)),
    };
    assert_eq!(limiter.record(overloaded, 0, 8, NO_PAUSE_MAX, t), None);
    assert_eq!(limiter.limit(8), 8);
    assert_eq!(limiter.limit(30), 30, "the ceiling, as it is now");
    assert!(
        limiter.paused_for(t).is_some(),
        "Retry-After is honoured still"
    );
}

#[test]
fn a_wait_for_a_slot_is_judged_by_the_rate_slots_free_at() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    assert_eq!(
        limiter.expected_wait(500, CEILING),
        Duration::ZERO,
        "nothing known yet"
    );
    saturated_rounds(&mut limiter, 1, CEILING, |_| ms(100), &mut t);
    // Slow start, 16 now: 16 + 32 + 64 + 128 + 256 slots in five rounds of 100 ms.
    assert_eq!(limiter.expected_wait(1, CEILING), ms(100));
    assert_eq!(limiter.expected_wait(496, CEILING), ms(500));
    assert_eq!(limiter.expected_wait(497, CEILING), ms(600));
    // Slow start over: 12 slots per 100 ms.
    saturated_rounds(&mut limiter, 1, CEILING, |_| ms(500), &mut t);
    saturated_rounds(&mut limiter, 30, CEILING, |_| ms(100), &mut t);
    let limit = limiter.limit(CEILING) as u32;
    let mean = limiter.recent_latency().expect("answered");
    let wait = limiter.expected_wait(limit * 3, CEILING);
    assert!(
        wait.abs_diff(mean * 3) < Duration::from_micros(1),
        "{wait:?}"
    );
}

#[test]
fn a_wait_is_judged_by_the_pace_the_limit_keeps_not_by_an_overshoot() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    // Slow start runs past the knee at 16: 5 ms answers at 8 and 16, 85 ms at 32.
    let seen = saturated_rounds(&mut limiter, 3, CEILING, knee_16, &mut t);
    assert_eq!(seen[..2], [16, 32]);
    assert!(seen[2] < 32, "the overshoot was seen: {seen:?}");
    let recent = limiter.recent_latency().expect("answered");
    assert!(
        recent > ms(40),
        "the mean still carries the overshoot: {recent:?}"
    );
    // The limit keeps answers within twice the unloaded 5 ms: a wait is judged at 10 ms
    // an answer, so the 500th in line expects about 500 / limit rounds of 10 ms.
    let limit = limiter.limit(CEILING) as u32;
    assert_eq!(limiter.expected_wait(limit * 50, CEILING), ms(10) * 50);
}

#[test]
fn a_doubled_limit_is_judged_by_its_own_attempts_not_by_the_halfs_answers() {
    let mut t = Instant::now();
    let mut limiter = Limiter::new(true, CEILING, t);
    saturated_rounds(&mut limiter, 2, CEILING, knee_16, &mut t);
    assert_eq!(limiter.limit(CEILING), 32);
    // The 16 attempts admitted at 16 answer in 5 ms after the limit doubled: they are
    // not the 32's round, which would double the limit again past the knee.
    let half = limiter.generation() - 1;
    for _ in 0..32 {
        t += ms(1);
        limiter.record(Signal::Answered(ms(5)), half, CEILING, NO_PAUSE_MAX, t);
    }
    assert_eq!(limiter.limit(CEILING), 32);
}
