//! A subscription: one webhook of one organization, listening to some event types.

use uuid::Uuid;

use crate::Secret;

/// One webhook. "Endpoint" always means one of these, never a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// A UUIDv7, so ids sort by creation time.
    pub id: Uuid,
    /// The organization that owns it.
    pub org: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// What the owner wrote about it.
    pub description: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// Disabled webhooks receive nothing; their due retries are dead-lettered.
    pub enabled: bool,
    /// Why it was disabled, when hookwire disabled it.
    pub disabled_reason: Option<String>,
    /// Attempts in flight at once to this webhook; `delivery.per_endpoint_concurrency` if unset.
    pub max_concurrency: Option<u32>,
    /// Deliveries per second to this webhook; unlimited if unset.
    pub rate_limit_per_sec: Option<u32>,
    /// Endpoint health: failed attempts since the last success.
    pub consecutive_failures: u32,
    /// When the current run of failures began (ms), if it is failing.
    pub failing_since_ms: Option<u64>,
    /// The last successful delivery (ms), if any (updated at most once a minute).
    pub last_success_ms: Option<u64>,
    /// Newest first. During a rotation's grace period the old key signs too.
    pub keys: Vec<SigningKey>,
    /// Creation time, in milliseconds since the epoch.
    pub created_at_ms: u64,
    /// Last change, in milliseconds since the epoch.
    pub updated_at_ms: u64,
    /// Incremented by every write of its settings (API writes, hookwire disabling it), so
    /// that a write made from a stale read is refused instead of undoing a newer one.
    /// Health counters are merged onto the current record and do not bump it. Records
    /// written before versions existed read as 0.
    pub version: u64,
}

/// At most this many signing keys are live at once (the current one and the most recent
/// rotated-out ones), so that the signature header stays small however often a secret is
/// rotated: receivers refuse oversized headers (431).
pub const MAX_SIGNING_KEYS: usize = 3;

/// A signing secret and the end of its validity, if it is being rotated out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The secret.
    pub secret: Secret,
    /// After this time (ms since the epoch) it no longer signs.
    pub expires_at_ms: Option<u64>,
}

impl Subscription {
    /// A new, enabled, healthy webhook with one signing secret and a fresh UUIDv7 id.
    pub fn new(
        org: &str,
        url: &str,
        description: &str,
        events: Vec<String>,
        secret: Secret,
        now_ms: u64,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            org: org.to_owned(),
            url: url.to_owned(),
            description: description.to_owned(),
            events,
            enabled: true,
            disabled_reason: None,
            max_concurrency: None,
            rate_limit_per_sec: None,
            consecutive_failures: 0,
            failing_since_ms: None,
            last_success_ms: None,
            keys: vec![SigningKey {
                secret,
                expires_at_ms: None,
            }],
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            version: 0,
        }
    }

    /// Makes `secret` the signing key. The previous keys keep signing until `grace_end_ms`
    /// (or their own earlier end); expired keys are dropped, and so are the oldest beyond
    /// [`MAX_SIGNING_KEYS`], early.
    pub fn rotate(&mut self, secret: Secret, now_ms: u64, grace_end_ms: u64) {
        let previous = std::mem::take(&mut self.keys)
            .into_iter()
            .filter(|k| k.expires_at_ms.is_none_or(|end| end > now_ms))
            .map(|k| SigningKey {
                expires_at_ms: Some(
                    k.expires_at_ms
                        .map_or(grace_end_ms, |end| end.min(grace_end_ms)),
                ),
                secret: k.secret,
            })
            .take(MAX_SIGNING_KEYS - 1);
        self.keys = std::iter::once(SigningKey {
            secret,
            expires_at_ms: None,
        })
        .chain(previous)
        .collect();
    }

    /// The secrets that sign an attempt made at `now_ms`.
    pub fn signing_secrets(&self, now_ms: u64) -> impl Iterator<Item = &Secret> {
        self.keys
            .iter()
            .filter(move |k| k.expires_at_ms.is_none_or(|end| now_ms < end))
            .map(|k| &k.secret)
    }

    /// Whether it receives events of `event_type`.
    pub fn listens_to(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_keys_stop_signing() {
        let (new, old) = (
            Secret::generate().expect("rng"),
            Secret::generate().expect("rng"),
        );
        let mut sub = Subscription::new(
            "acme",
            "https://example.com/",
            "",
            vec!["report_created".into()],
            new.clone(),
            0,
        );
        sub.keys.push(SigningKey {
            secret: old.clone(),
            expires_at_ms: Some(1_000),
        });
        assert_eq!(sub.signing_secrets(999).collect::<Vec<_>>(), [&new, &old]);
        assert_eq!(sub.signing_secrets(1_000).collect::<Vec<_>>(), [&new]);
        assert!(sub.listens_to("report_created"));
        assert!(!sub.listens_to("report_run_started"));
    }

    #[test]
    fn rotations_keep_at_most_max_signing_keys_live() {
        let first = Secret::generate().expect("rng");
        let mut sub = Subscription::new("acme", "https://example.com/", "", vec![], first, 0);
        let mut issued = Vec::new();
        for i in 0..1_000u64 {
            let secret = Secret::generate().expect("rng");
            issued.push(secret.clone());
            sub.rotate(secret, i, i + 86_400_000);
        }
        let live: Vec<&Secret> = sub.signing_secrets(1_000).collect();
        assert_eq!(live.len(), MAX_SIGNING_KEYS);
        // The newest secret first, then the most recent previous ones.
        let newest: Vec<&Secret> = issued.iter().rev().take(MAX_SIGNING_KEYS).collect();
        assert_eq!(live, newest);
        assert_eq!(sub.keys[0].expires_at_ms, None);
    }

    #[test]
    fn rotation_drops_expired_keys_and_caps_the_grace_of_older_ones() {
        let mut sub = Subscription::new(
            "acme",
            "https://example.com/",
            "",
            vec![],
            Secret::generate().expect("rng"),
            0,
        );
        sub.rotate(Secret::generate().expect("rng"), 0, 100);
        // A second rotation after the first grace ended: only the current key is kept.
        sub.rotate(Secret::generate().expect("rng"), 200, 300);
        assert_eq!(sub.keys.len(), 2);
        // A rotation within the grace keeps the older key only until its own end.
        sub.rotate(Secret::generate().expect("rng"), 250, 10_000);
        let ends: Vec<_> = sub.keys.iter().map(|k| k.expires_at_ms).collect();
        assert_eq!(ends, [None, Some(10_000), Some(300)]);
    }
}
