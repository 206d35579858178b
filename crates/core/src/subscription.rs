//! A subscription: one webhook of one organization, listening to some event types.

use uuid::Uuid;

use crate::client_tls::ClientTls;
use crate::custom_headers::CustomHeader;
use crate::filter::Filter;
use crate::signing::{Ed25519Key, PublicKey};
use crate::transform::Transform;
use crate::{RetryPolicy, Secret};

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
    /// Ed25519 keys that add `v1a` signatures, newest first, rotated like `keys`; empty
    /// unless the webhook opted in.
    pub ed25519_keys: Vec<AsymmetricKey>,
    /// Static headers added to every request.
    pub headers: Vec<CustomHeader>,
    /// Only events whose body passes it are delivered.
    pub filter: Option<Filter>,
    /// What it is sent instead of the event's body: the JSON of this expression's value.
    pub transform: Option<Transform>,
    /// Its client certificate (mutual TLS) and CA bundle; empty: the server's defaults.
    pub client_tls: ClientTls,
    /// Its own retry schedule and age limit; empty: the operator's.
    pub retry: RetryPolicy,
    /// Creation time, in milliseconds since the epoch.
    pub created_at_ms: u64,
    /// Last change, in milliseconds since the epoch.
    pub updated_at_ms: u64,
    /// Incremented by every write of its settings (API writes, hookwire disabling it), so
    /// that a write made from a stale read is refused instead of undoing a newer one.
    /// Health counters are merged onto the current record and do not bump it. Records
    /// written before versions existed read as 0.
    pub version: u64,
    /// Why the stored record cannot be used, when it cannot: it does not decode, a secret
    /// does not open, or its filter no longer passes the rules. Such a webhook is read as
    /// disabled with what could be read of it, receives nothing, and can only be deleted.
    /// Never stored: the store sets it on read.
    pub broken_reason: Option<String>,
}

/// At most this many signing keys are live at once (the current one and the most recent
/// rotated-out ones), so that the signature header stays small however often a secret is
/// rotated: receivers refuse oversized headers (431).
pub const MAX_SIGNING_KEYS: usize = 3;

/// An Ed25519 key and the end of its validity, if it is being rotated out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsymmetricKey {
    /// What receivers verify with.
    pub public: PublicKey,
    /// What signs; `None` when the webhook was read without its secrets (a listing).
    pub private: Option<Ed25519Key>,
    /// After this time (ms since the epoch) it no longer signs.
    pub expires_at_ms: Option<u64>,
}

impl AsymmetricKey {
    /// A key that signs until rotated out.
    pub fn current(private: Ed25519Key) -> Self {
        Self {
            public: private.public_key(),
            private: Some(private),
            expires_at_ms: None,
        }
    }
}

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
            ed25519_keys: Vec::new(),
            headers: Vec::new(),
            filter: None,
            transform: None,
            client_tls: ClientTls::default(),
            retry: RetryPolicy::default(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            version: 0,
            broken_reason: None,
        }
    }

    /// Makes `secret` the signing key. The previous keys keep signing until `grace_end_ms`
    /// (or their own earlier end); expired keys are dropped, and so are the oldest beyond
    /// [`MAX_SIGNING_KEYS`], early.
    pub fn rotate(&mut self, secret: Secret, now_ms: u64, grace_end_ms: u64) {
        let new = SigningKey {
            secret,
            expires_at_ms: None,
        };
        self.keys = rotated(
            std::mem::take(&mut self.keys),
            new,
            now_ms,
            grace_end_ms,
            |k| &mut k.expires_at_ms,
        );
    }

    /// Makes `key` the Ed25519 signing key, by the same rules as [`Subscription::rotate`]:
    /// the previous ones sign through the grace, at most [`MAX_SIGNING_KEYS`] at once.
    pub fn rotate_ed25519(&mut self, key: Ed25519Key, now_ms: u64, grace_end_ms: u64) {
        self.ed25519_keys = rotated(
            std::mem::take(&mut self.ed25519_keys),
            AsymmetricKey::current(key),
            now_ms,
            grace_end_ms,
            |k| &mut k.expires_at_ms,
        );
    }

    /// The `webhook-signature` header of an attempt made at `now_ms`: a `v1` signature by
    /// each live secret, then a `v1a` signature by each live Ed25519 key.
    pub fn signature_header(
        &self,
        webhook_id: &str,
        timestamp_secs: u64,
        body: &[u8],
        now_ms: u64,
    ) -> String {
        crate::signing::signature_header_with(
            self.signing_secrets(now_ms),
            self.ed25519_keys
                .iter()
                .filter(move |k| k.expires_at_ms.is_none_or(|end| now_ms < end))
                .filter_map(|k| k.private.as_ref()),
            webhook_id,
            timestamp_secs,
            body,
        )
    }

    /// The public keys whose `v1a` signatures an attempt made at `now_ms` carries, newest
    /// first, with the end of each one's grace.
    pub fn live_public_keys(&self, now_ms: u64) -> impl Iterator<Item = &AsymmetricKey> {
        self.ed25519_keys
            .iter()
            .filter(move |k| k.expires_at_ms.is_none_or(|end| now_ms < end))
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

/// `new` first, then the keys of `keys` still valid at `now_ms`, each ending by
/// `grace_end_ms` at the latest, the oldest dropped beyond [`MAX_SIGNING_KEYS`].
fn rotated<K>(
    keys: Vec<K>,
    new: K,
    now_ms: u64,
    grace_end_ms: u64,
    end: impl Fn(&mut K) -> &mut Option<u64>,
) -> Vec<K> {
    let previous = keys
        .into_iter()
        .filter_map(|mut k| {
            let slot = end(&mut k);
            if slot.is_some_and(|at| at <= now_ms) {
                return None;
            }
            *slot = Some(slot.map_or(grace_end_ms, |at| at.min(grace_end_ms)));
            Some(k)
        })
        .take(MAX_SIGNING_KEYS - 1);
    std::iter::once(new).chain(previous).collect()
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

    #[test]
    fn ed25519_keys_rotate_like_secrets_and_sign_after_hmac() {
        let secret = Secret::generate().expect("rng");
        let mut sub = Subscription::new("acme", "https://example.com/", "", vec![], secret, 0);
        assert!(!sub.signature_header("msg_1", 1, b"{}", 0).contains("v1a,"));
        let (first, second) = (
            Ed25519Key::generate().expect("rng"),
            Ed25519Key::generate().expect("rng"),
        );
        sub.rotate_ed25519(first.clone(), 0, 100);
        sub.rotate_ed25519(second.clone(), 10, 100);
        let header = sub.signature_header("msg_1", 1, b"{}", 50);
        let kinds: Vec<&str> = header
            .split(' ')
            .map(|s| &s[..s.find(',').unwrap_or(0)])
            .collect();
        assert_eq!(kinds, ["v1", "v1a", "v1a"]);
        first
            .public_key()
            .verify("msg_1", 1, b"{}", &header)
            .expect("old key signs in its grace");
        second
            .public_key()
            .verify("msg_1", 1, b"{}", &header)
            .expect("new key signs");
        let after_grace = sub.signature_header("msg_1", 1, b"{}", 100);
        assert!(
            first
                .public_key()
                .verify("msg_1", 1, b"{}", &after_grace)
                .is_err()
        );
        second
            .public_key()
            .verify("msg_1", 1, b"{}", &after_grace)
            .expect("new key signs");
        let live: Vec<_> = sub.live_public_keys(50).map(|k| k.public).collect();
        assert_eq!(live, [second.public_key(), first.public_key()]);
        for i in 0..10 {
            sub.rotate_ed25519(Ed25519Key::generate().expect("rng"), 20 + i, 1_000);
        }
        assert_eq!(sub.ed25519_keys.len(), MAX_SIGNING_KEYS);
    }
}
