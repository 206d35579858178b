use super::*;
use crate::{Catalog, RetrySchedule, Secret};

const NOW: u64 = 1_000_000_000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn rules() -> DeliveryRules {
    let schedule = RetrySchedule::try_new(vec![secs(5), secs(30), secs(120)]).expect("valid");
    DeliveryRules {
        plan: RetryPlan::try_new(schedule, secs(10)).expect("valid"),
        max_age: secs(3600),
        disable_after: secs(600),
    }
}

fn webhook() -> Subscription {
    let secret = Secret::from_bytes(vec![7; 32]).expect("secret");
    Subscription::new("acme", "https://a.test/", "", vec![], secret, NOW - 1)
}

/// Healthy, last success 10 s ago: a success writes nothing.
fn healthy() -> Subscription {
    Subscription {
        last_success_ms: Some(NOW - 10_000),
        ..webhook()
    }
}

/// Failing since `for_secs` ago.
fn failing(for_secs: u64) -> Subscription {
    Subscription {
        consecutive_failures: 3,
        failing_since_ms: Some(NOW - for_secs * 1000),
        last_success_ms: Some(NOW - for_secs * 1000 - 1),
        ..webhook()
    }
}

fn retry(after: Option<u64>) -> Outcome {
    Outcome::Retry {
        after: after.map(secs),
    }
}

fn park(delay: u64) -> Disposition {
    Disposition::Park {
        delay: secs(delay),
        cause: ParkCause::Retry,
    }
}

fn dead(reason: DeadReason, detail: &str) -> Disposition {
    Disposition::DeadLetter {
        reason,
        detail: detail.to_owned(),
    }
}

/// What, outcome, attempts made, webhook, health write, disable, disposition.
type Row = (
    &'static str,
    Outcome,
    u32,
    Subscription,
    Option<HealthRecord>,
    Option<Disable>,
    Disposition,
);

#[test]
fn after_an_attempt() {
    use HealthRecord::{Delivered as Success, Failed};
    let described = || "receiver answered 503".to_owned();
    let rows: Vec<Row> = vec![
        (
            "delivered, healthy: no write",
            Outcome::Delivered,
            1,
            healthy(),
            None,
            None,
            Disposition::Delivered,
        ),
        (
            "delivered, never succeeded before: written",
            Outcome::Delivered,
            1,
            webhook(),
            Some(Success),
            None,
            Disposition::Delivered,
        ),
        (
            "delivered, last success over a minute ago: written",
            Outcome::Delivered,
            2,
            Subscription {
                last_success_ms: Some(NOW - HEALTH_WRITE_EVERY_MS - 1),
                ..webhook()
            },
            Some(Success),
            None,
            Disposition::Delivered,
        ),
        (
            "delivered, last success a minute ago: no write",
            Outcome::Delivered,
            2,
            Subscription {
                last_success_ms: Some(NOW - HEALTH_WRITE_EVERY_MS),
                ..webhook()
            },
            None,
            None,
            Disposition::Delivered,
        ),
        (
            "delivered after failures: ends the run",
            Outcome::Delivered,
            3,
            Subscription {
                consecutive_failures: 2,
                ..healthy()
            },
            Some(Success),
            None,
            Disposition::Delivered,
        ),
        (
            "delivered while failing for long: never disables",
            Outcome::Delivered,
            4,
            failing(100_000),
            Some(Success),
            None,
            Disposition::Delivered,
        ),
        (
            "retryable, attempts left: the schedule's delay",
            retry(None),
            1,
            healthy(),
            Some(Failed),
            None,
            park(5),
        ),
        (
            "retryable, second attempt",
            retry(None),
            2,
            healthy(),
            Some(Failed),
            None,
            park(30),
        ),
        (
            "Retry-After within the tier",
            retry(Some(3)),
            1,
            healthy(),
            Some(Failed),
            None,
            park(5),
        ),
        (
            "Retry-After picks the covering tier",
            retry(Some(20)),
            1,
            healthy(),
            Some(Failed),
            None,
            park(30),
        ),
        (
            "Retry-After beyond every tier: the longest",
            retry(Some(86_400)),
            1,
            healthy(),
            Some(Failed),
            None,
            park(120),
        ),
        (
            "exhausted",
            retry(None),
            4,
            healthy(),
            Some(Failed),
            None,
            dead(
                DeadReason::Exhausted,
                "4 attempts failed; last: receiver answered 503",
            ),
        ),
        (
            "exhausted despite Retry-After",
            retry(Some(1)),
            4,
            healthy(),
            Some(Failed),
            None,
            dead(
                DeadReason::Exhausted,
                "4 attempts failed; last: receiver answered 503",
            ),
        ),
        (
            "permanent",
            Outcome::Permanent,
            1,
            healthy(),
            Some(Failed),
            None,
            dead(DeadReason::PermanentStatus, "receiver answered 503"),
        ),
        (
            "410: disables and dead-letters, no health write",
            Outcome::Gone,
            1,
            healthy(),
            None,
            Some(Disable::Gone),
            dead(DeadReason::Gone, "receiver answered 410"),
        ),
        (
            "410 while failing for long: disabled as gone",
            Outcome::Gone,
            2,
            failing(100_000),
            None,
            Some(Disable::Gone),
            dead(DeadReason::Gone, "receiver answered 410"),
        ),
        (
            "failing, not yet disable_after",
            retry(None),
            2,
            failing(599),
            Some(Failed),
            None,
            park(30),
        ),
        (
            "failing for disable_after: disables, then retries",
            retry(None),
            2,
            failing(600),
            Some(Failed),
            Some(Disable::Failing(secs(600))),
            park(30),
        ),
        (
            "failing longer, exhausted: disables, then dead-letters",
            retry(None),
            4,
            failing(700),
            Some(Failed),
            Some(Disable::Failing(secs(700))),
            dead(
                DeadReason::Exhausted,
                "4 attempts failed; last: receiver answered 503",
            ),
        ),
        (
            "failing longer, permanent: disables, then dead-letters",
            Outcome::Permanent,
            1,
            failing(700),
            Some(Failed),
            Some(Disable::Failing(secs(700))),
            dead(DeadReason::PermanentStatus, "receiver answered 503"),
        ),
        (
            "first failure of a run never disables",
            retry(None),
            1,
            Subscription {
                failing_since_ms: None,
                ..failing(0)
            },
            Some(Failed),
            None,
            park(5),
        ),
    ];
    for (what, outcome, attempts, webhook, health, disable, disposition) in rows {
        let decision = rules().after_attempt(outcome, attempts, described, &webhook, NOW);
        assert_eq!(
            decision,
            Decision {
                health,
                disable,
                disposition
            },
            "{what}"
        );
    }
}

#[test]
fn a_delivered_attempt_is_never_described() {
    let decision = rules().after_attempt(
        Outcome::Delivered,
        1,
        || panic!("described"),
        &healthy(),
        NOW,
    );
    assert_eq!(decision.disposition, Disposition::Delivered);
}

#[test]
fn before_an_attempt() {
    let enabled = healthy();
    let disabled = Subscription {
        enabled: false,
        ..healthy()
    };
    let rules = rules();
    assert_eq!(
        rules.before_attempt(Some(&enabled), secs(3600)),
        BeforeAttempt::Attempt(&enabled),
        "exactly max_age old is not expired"
    );
    assert_eq!(
        rules.before_attempt(None, secs(0)),
        BeforeAttempt::Instead(Disposition::Dropped),
        "deleted webhook"
    );
    assert_eq!(
        rules.before_attempt(Some(&disabled), secs(0)),
        BeforeAttempt::Instead(dead(
            DeadReason::WebhookDisabled,
            &format!("webhook {} is disabled", disabled.id)
        )),
    );
    assert_eq!(
        rules.before_attempt(Some(&disabled), secs(7200)),
        BeforeAttempt::Instead(dead(
            DeadReason::WebhookDisabled,
            &format!("webhook {} is disabled", disabled.id)
        )),
        "disabled before expired"
    );
    assert_eq!(
        rules.before_attempt(Some(&enabled), Duration::from_millis(3_601_500)),
        BeforeAttempt::Instead(dead(
            DeadReason::Expired,
            "undelivered after 3601s (max_age 1h)"
        )),
    );
}

fn with_policy(schedule: Option<&[u64]>, max_age: Option<u64>) -> Subscription {
    Subscription {
        retry: crate::RetryPolicy {
            schedule: schedule.map(|s| s.iter().copied().map(secs).collect()),
            max_age: max_age.map(secs),
        },
        ..webhook()
    }
}

#[test]
fn a_webhooks_own_max_age_expires_its_deliveries_sooner() {
    let rules = rules();
    let short = with_policy(None, Some(60));
    assert_eq!(
        rules.before_attempt(Some(&short), secs(60)),
        BeforeAttempt::Attempt(&short)
    );
    assert_eq!(
        rules.before_attempt(Some(&short), Duration::from_millis(61_000)),
        BeforeAttempt::Instead(dead(
            DeadReason::Expired,
            "undelivered after 61s (max_age 1m)"
        )),
    );
    // Longer than the operator's: the operator's still applies.
    let long = with_policy(None, Some(7200));
    assert_eq!(
        rules.before_attempt(Some(&long), secs(3601)),
        BeforeAttempt::Instead(dead(
            DeadReason::Expired,
            "undelivered after 3601s (max_age 1h)"
        )),
    );
}

#[test]
fn a_webhooks_own_schedule_decides_its_retries() {
    let rules = rules();
    let described = || "receiver answered 500".to_owned();
    let one_tier = with_policy(Some(&[5]), None);
    let after = |attempts, sub: &Subscription| {
        rules
            .after_attempt(retry(None), attempts, described, sub, NOW)
            .disposition
    };
    assert_eq!(after(1, &one_tier), park(5));
    assert_eq!(
        after(2, &one_tier),
        dead(
            DeadReason::Exhausted,
            "2 attempts failed; last: receiver answered 500"
        )
    );
    // The operator's schedule still has retries left at that point.
    assert_eq!(after(2, &webhook()), park(30));
    let none = with_policy(Some(&[]), None);
    assert_eq!(
        after(1, &none),
        dead(
            DeadReason::Exhausted,
            "1 attempts failed; last: receiver answered 500"
        )
    );
    // A 410 or a permanent status is decided as for any webhook.
    assert_eq!(
        rules
            .after_attempt(Outcome::Gone, 1, described, &one_tier, NOW)
            .disposition,
        dead(DeadReason::Gone, "receiver answered 410")
    );
}

#[test]
fn deferrals_use_no_attempt() {
    let rules = rules();
    let deferred = |deferral, delay| Disposition::Park {
        delay: secs(delay),
        cause: ParkCause::Deferred(deferral),
    };
    for (deferral, delay) in [
        (Deferral::AtCapacity, 10),
        (Deferral::RateLimited, 10),
        // Every tier covers a circuit, the deferral tier included.
        (Deferral::CircuitOpen(secs(7)), 10),
        (Deferral::CircuitOpen(secs(3)), 5),
        (Deferral::CircuitOpen(secs(31)), 120),
        (Deferral::CircuitOpen(secs(9999)), 120),
        (Deferral::RetryAfter(secs(3)), 5),
        (Deferral::RetryAfter(secs(31)), 120),
    ] {
        assert_eq!(
            rules.deferred(deferral),
            deferred(deferral, delay),
            "{deferral:?}"
        );
    }
    assert_eq!(
        rules.handed_back(),
        Disposition::Park {
            delay: secs(10),
            cause: ParkCause::HandedBack
        }
    );
}

#[test]
fn disable_reasons() {
    assert_eq!(Disable::Gone.reason(), "the receiver answered 410 Gone");
    assert_eq!(
        Disable::Failing(Duration::from_millis(600_900)).reason(),
        "no successful delivery for 600s (delivery.disable_after)"
    );
}

#[test]
fn operational_events_never_announce_operational_events() {
    let catalog = Catalog::builtin();
    assert!(emits_operational_events(catalog.get("report_created")));
    assert!(emits_operational_events(None), "unknown types announce");
    for t in ["webhook_disabled", "delivery_dead_lettered"] {
        assert!(!emits_operational_events(catalog.get(t)), "{t}");
    }
}

#[test]
fn an_open_circuits_deferral_comes_back_within_the_max_deferral_left() {
    let rules = rules();
    let delay = |deferral, left| match rules.deferred_within(deferral, secs(left)) {
        Disposition::Park {
            delay,
            cause: ParkCause::Deferred(d),
        } if d == deferral => delay.as_secs(),
        other => panic!("{other:?}"),
    };
    // Tiers: 5 s, 10 s (deferral), 30 s, 120 s.
    assert_eq!(delay(Deferral::CircuitOpen(secs(31)), 300), 120, "fits");
    assert_eq!(
        delay(Deferral::CircuitOpen(secs(31)), 60),
        30,
        "longest that fits"
    );
    assert_eq!(
        delay(Deferral::CircuitOpen(secs(31)), 2),
        5,
        "none fits: shortest"
    );
    assert_eq!(delay(Deferral::CircuitOpen(secs(0)), 0), 5);
    assert_eq!(
        delay(Deferral::AtCapacity, 300),
        10,
        "caps: the deferral tier"
    );
    assert_eq!(
        delay(Deferral::RateLimited, 7),
        5,
        "the deferral tier does not fit: the longest that does"
    );
    assert_eq!(delay(Deferral::AtCapacity, 0), 5, "none fits: shortest");
}

#[test]
fn a_cap_or_rate_deferral_waits_in_process_for_a_slot_once_past_the_bound() {
    let rules = rules();
    let bound = secs(300);
    let park = |delay: u64, deferral| {
        AfterDeferral::Park(Disposition::Park {
            delay: secs(delay),
            cause: ParkCause::Deferred(deferral),
        })
    };
    for deferral in [Deferral::AtCapacity, Deferral::RateLimited] {
        assert_eq!(
            rules.after_deferral(deferral, Duration::ZERO, bound),
            park(10, deferral),
            "a first deferral waits in the deferral tier"
        );
        assert_eq!(
            rules.after_deferral(deferral, secs(292), bound),
            park(5, deferral),
            "it comes back within the bound"
        );
        assert_eq!(
            rules.after_deferral(deferral, secs(299), bound),
            park(5, deferral),
            "the shortest tier when none fits"
        );
        assert_eq!(
            rules.after_deferral(deferral, bound, bound),
            AfterDeferral::WaitForSlot,
            "at the bound it is no longer parked"
        );
        assert_eq!(
            rules.after_deferral(deferral, secs(3000), bound),
            AfterDeferral::WaitForSlot
        );
    }
    let open = Deferral::CircuitOpen(secs(31));
    assert_eq!(
        rules.after_deferral(open, Duration::ZERO, bound),
        park(120, open),
        "a circuit's deferral waits out its cool-off in a tier"
    );
    assert_eq!(
        rules.after_deferral(open, bound, bound),
        park(5, open),
        "an open circuit past the bound (a race): the shortest tier, never held"
    );
}
