//! How many events a node resends per second, per webhook and per organization: token
//! buckets that refill at a configured rate, so that one write token cannot turn resend
//! into an amplifier of its own traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Buckets kept at most (about 100 bytes each). Past it, full buckets (idle ones) are
/// dropped, and while none is, a webhook or organization without a bucket waits: the
/// budget fails closed rather than grow or start anyone over.
const MAX_BUCKETS: usize = 100_000;

/// What a newcomer waits while every bucket is in use.
const FULL_WAIT: Duration = Duration::from_secs(1);

/// The resend budgets of one node.
#[derive(Debug)]
pub struct ResendBudget {
    per_webhook: Rate,
    per_org: Rate,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    webhooks: HashMap<Uuid, Bucket>,
    orgs: HashMap<String, Bucket>,
    /// The last sweep for idle buckets: at most one a second, so that a full map costs a
    /// request no scan.
    swept: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    per_sec: f64,
    burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Rate {
    fn refilled(self, bucket: Option<&Bucket>, now: Instant) -> Bucket {
        match bucket {
            None => Bucket {
                tokens: self.burst,
                at: now,
            },
            Some(b) => Bucket {
                tokens: (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_sec)
                    .min(self.burst),
                at: now,
            },
        }
    }

    /// How long until `bucket` holds one whole token.
    fn wait(self, bucket: &Bucket) -> Duration {
        Duration::from_secs_f64(((1.0 - bucket.tokens) / self.per_sec).max(0.0))
    }
}

/// A budget's burst, in seconds of its rate: 25 s of the default 20 a second is one full
/// page of 500 events.
const BURST_SECS: usize = 25;

impl ResendBudget {
    /// The budgets of `api.resend_per_webhook_per_sec` and `api.resend_per_org_per_sec`:
    /// each bursts to [`BURST_SECS`] of its rate, at most one page per webhook and four
    /// per organization.
    pub fn from_rates(per_webhook: u32, per_org: u32) -> Self {
        let burst = |rate: u32, pages: usize| {
            (rate as usize)
                .saturating_mul(BURST_SECS)
                .min(pages * super::MAX_RESEND)
        };
        Self::new(
            per_webhook,
            burst(per_webhook, 1),
            per_org,
            burst(per_org, 4),
        )
    }

    /// `per_webhook` events a second with a burst of `webhook_burst`, and `per_org` with a
    /// burst of `org_burst`.
    pub fn new(per_webhook: u32, webhook_burst: usize, per_org: u32, org_burst: usize) -> Self {
        Self {
            per_webhook: Rate {
                per_sec: f64::from(per_webhook.max(1)),
                burst: webhook_burst.max(1) as f64,
            },
            per_org: Rate {
                per_sec: f64::from(per_org.max(1)),
                burst: org_burst.max(1) as f64,
            },
            buckets: Mutex::default(),
        }
    }

    /// Takes up to `wanted` events from both of `webhook`'s and `org`'s budgets: how many
    /// it may resend now (at least one), or how long to wait for one.
    pub fn take(&self, org: &str, webhook: Uuid, wanted: usize) -> Result<usize, Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.forget_idle(self, now);
        let newcomers = usize::from(!buckets.webhooks.contains_key(&webhook))
            + usize::from(!buckets.orgs.contains_key(org));
        if buckets.webhooks.len() + buckets.orgs.len() + newcomers > MAX_BUCKETS {
            return Err(FULL_WAIT);
        }
        let mine = self
            .per_webhook
            .refilled(buckets.webhooks.get(&webhook), now);
        let ours = self.per_org.refilled(buckets.orgs.get(org), now);
        let granted = mine.tokens.min(ours.tokens).min(wanted as f64).floor();
        let result = if granted < 1.0 {
            Err(self.per_webhook.wait(&mine).max(self.per_org.wait(&ours)))
        } else {
            Ok(granted as usize)
        };
        let spent = if result.is_ok() { granted } else { 0.0 };
        buckets.webhooks.insert(
            webhook,
            Bucket {
                tokens: mine.tokens - spent,
                ..mine
            },
        );
        buckets.orgs.insert(
            org.to_owned(),
            Bucket {
                tokens: ours.tokens - spent,
                ..ours
            },
        );
        result
    }

    /// Gives back what a [`ResendBudget::take`] granted but did not use (a range that
    /// ended early).
    pub fn give_back(&self, org: &str, webhook: Uuid, unused: usize) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.webhooks.get_mut(&webhook) {
            b.tokens = (b.tokens + unused as f64).min(self.per_webhook.burst);
        }
        if let Some(b) = buckets.orgs.get_mut(org) {
            b.tokens = (b.tokens + unused as f64).min(self.per_org.burst);
        }
    }
}

impl Buckets {
    /// Past [`MAX_BUCKETS`], drops the buckets that have refilled (they would start full),
    /// at most once a second.
    fn forget_idle(&mut self, budget: &ResendBudget, now: Instant) {
        if self.webhooks.len() + self.orgs.len() < MAX_BUCKETS
            || self
                .swept
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.swept = Some(now);
        self.webhooks.retain(|_, b| {
            budget.per_webhook.refilled(Some(b), now).tokens < budget.per_webhook.burst
        });
        self.orgs
            .retain(|_, b| budget.per_org.refilled(Some(b), now).tokens < budget.per_org.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_gets_its_burst_then_waits_for_its_rate() {
        let budget = ResendBudget::new(10, 50, 1000, 1000);
        let id = Uuid::now_v7();
        assert_eq!(budget.take("acme", id, 500), Ok(50), "one burst");
        let wait = budget.take("acme", id, 500).expect_err("then nothing");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "one event's wait at 10/s: {wait:?}"
        );
        assert_eq!(
            budget.take("acme", Uuid::now_v7(), 20),
            Ok(20),
            "another webhook has its own budget"
        );
    }

    #[test]
    fn an_organization_shares_one_budget_across_its_webhooks() {
        let budget = ResendBudget::new(100, 100, 100, 150);
        assert_eq!(budget.take("acme", Uuid::now_v7(), 100), Ok(100));
        assert_eq!(
            budget.take("acme", Uuid::now_v7(), 100),
            Ok(50),
            "what the org has left"
        );
        assert!(budget.take("acme", Uuid::now_v7(), 1).is_err());
        assert_eq!(
            budget.take("globex", Uuid::now_v7(), 100),
            Ok(100),
            "not another org's"
        );
    }

    #[test]
    fn what_is_not_used_is_given_back() {
        let budget = ResendBudget::new(1, 10, 1, 10);
        let id = Uuid::now_v7();
        assert_eq!(budget.take("acme", id, 10), Ok(10));
        budget.give_back("acme", id, 4);
        assert_eq!(budget.take("acme", id, 10), Ok(4));
    }

    #[test]
    fn the_buckets_kept_are_bounded() {
        // Nothing refills while the test runs: every bucket stays in use.
        let slow = Rate {
            per_sec: 1e-9,
            burst: 1.0,
        };
        let budget = ResendBudget {
            per_webhook: slow,
            per_org: slow,
            buckets: Mutex::default(),
        };
        let mut refused = 0;
        for i in 0..MAX_BUCKETS {
            if budget.take(&format!("org{i}"), Uuid::now_v7(), 1).is_err() {
                refused += 1;
            }
        }
        let buckets = budget.buckets.lock().expect("lock");
        assert!(buckets.webhooks.len() + buckets.orgs.len() <= MAX_BUCKETS);
        assert_eq!(
            refused,
            MAX_BUCKETS / 2,
            "newcomers wait once every bucket is in use"
        );
    }
}
