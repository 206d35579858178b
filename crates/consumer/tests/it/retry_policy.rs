//! A webhook's own retry policy in the engine: its shorter schedule ends in `exhausted`
//! while a webhook on the operator's schedule keeps retrying, and its `max_age`
//! dead-letters a delivery as `expired` before the next attempt.

use std::time::Duration;

use hookwire_core::RetryPolicy;
use hookwire_testkit::{Harness, Receiver, Reply, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn a_webhooks_own_schedule_and_max_age_end_its_retries() {
    // Attempts of a webhook on this schedule come at 0, ~1 s, ~3 s, ~5 s, …
    let h = Harness::start(|c| {
        c.delivery.retry_schedule = vec![ms(1000), ms(2000), ms(2000), ms(2000), ms(2000)];
    })
    .await;
    let (one_tier, full, short_lived) = (
        Receiver::start(|_, _| Reply::status(500)).await,
        Receiver::start(|_, _| Reply::status(500)).await,
        Receiver::start(|_, _| Reply::status(500)).await,
    );
    let s_one = h.subscribe_acme_with(&one_tier.url(), |s| {
        s.retry = RetryPolicy {
            schedule: Some(vec![ms(1000)]),
            max_age: None,
        };
    });
    let s_full = h.subscribe_acme(&full.url());
    // Its second attempt comes at ~1 s, its third would at ~3 s: past 2 s, it expires.
    let s_short = h.subscribe_acme_with(&short_lived.url(), |s| {
        s.retry = RetryPolicy {
            schedule: None,
            max_age: Some(ms(2000)),
        };
    });
    h.publish_report("evt-policy", "https://mode.test/r/policy")
        .await;

    let dead = h.wait_dead_letters(2, WAIT).await;
    let of = |id| {
        dead.iter()
            .find(|d| d.subscription_id == Some(id))
            .unwrap_or_else(|| panic!("no dead letter for {id}: {dead:?}"))
    };
    let exhausted = of(s_one.id);
    assert_eq!(exhausted.reason, "exhausted", "{exhausted:?}");
    assert!(
        exhausted.detail.contains("2 attempts failed"),
        "{}",
        exhausted.detail
    );
    let expired = of(s_short.id);
    assert_eq!(expired.reason, "expired", "{expired:?}");
    assert!(expired.detail.contains("max_age 2s"), "{}", expired.detail);

    // The webhook on the operator's schedule goes on past both.
    eventually(
        WAIT,
        "a third attempt on the operator's schedule",
        || async { (full.requests().len() >= 3).then_some(()) },
    )
    .await;
    assert!(
        h.dead_letters()
            .iter()
            .all(|d| d.subscription_id != Some(s_full.id)),
        "the full schedule is not exhausted after 3 attempts"
    );
    assert_eq!(one_tier.requests().len(), 2, "one attempt and one retry");
    assert_eq!(
        short_lived.requests().len(),
        2,
        "no attempt after its max_age"
    );
    assert_eq!(h.dead_letters().len(), 2);
    h.finish().await;
}
