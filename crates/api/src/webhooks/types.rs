//! What the webhook routes read and answer.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use hookwire_core::retry::tier_name;
use hookwire_core::{Subscription, now_ms};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ApiState;

/// A webhook as the API shows it. Its secret is never shown again after create or rotate.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// Its id.
    pub id: Uuid,
    /// The organization that owns it.
    pub org: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// What it is for.
    pub description: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// Whether it receives deliveries.
    pub enabled: bool,
    /// Why hookwire disabled it, if it did.
    pub disabled_reason: Option<String>,
    /// Attempts in flight at once; the server default when null.
    pub max_concurrency: Option<u32>,
    /// Deliveries per second; unlimited when null.
    pub rate_limit_per_sec: Option<u32>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// When the current run of failures began (RFC 3339); null while healthy.
    pub failing_since: Option<String>,
    /// The last successful delivery (RFC 3339, refreshed at most once a minute).
    pub last_success_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Incremented by every change of its settings. Send it back as `version` in a PATCH
    /// to refuse the change (409 `conflict`) if someone changed it since you read it.
    pub version: u64,
    /// Its circuit breaker on the node that answers: each node judges a webhook by its
    /// own attempts. Null where that node runs no delivery engine.
    #[serde(default)]
    pub circuit: Option<Circuit>,
    /// Static headers added to every request, by lower-case name (secret ones are in
    /// `secret_headers`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The names of the headers whose values are secret: sealed at rest, never shown.
    #[serde(default)]
    pub secret_headers: Vec<String>,
    /// The `whpk_…` Ed25519 public keys whose `v1a` signatures deliveries carry, newest
    /// first; empty unless Ed25519 signing is on.
    #[serde(default)]
    pub public_keys: Vec<PublicKeyInfo>,
    /// The payload filter, a CEL expression over `body` and `event_type`; null: every
    /// event of its types is delivered.
    #[serde(default)]
    pub filter: Option<String>,
    /// The transform, a CEL expression over `body` and `event_type` whose value (a map or
    /// a list) is sent as the JSON body instead of the event's; null: the event's body is
    /// sent as it is.
    #[serde(default)]
    pub transform: Option<String>,
    /// Why its stored record cannot be used (it does not decode, a secret does not open,
    /// its filter no longer passes the rules); null for a sound webhook. A broken webhook
    /// receives nothing and can only be deleted.
    #[serde(default)]
    pub broken_reason: Option<String>,
    /// The client certificate presented when the receiver asks for one (mutual TLS):
    /// what it says, never its key, which is sealed at rest and never shown; null when
    /// none is set.
    #[serde(default)]
    pub client_certificate: Option<CertificateSummary>,
    /// The webhook's own CA certificates, which the receiver's certificate may chain to
    /// besides the server's trusted roots; empty when none are set.
    #[serde(default)]
    pub ca_certificates: Vec<CertificateSummary>,
    /// Its own retry policy; null: the operator's `delivery.retry_schedule` and
    /// `delivery.max_age`.
    #[serde(default)]
    pub retry: Option<RetryPolicyView>,
}

/// A webhook's own retry policy as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryPolicyView {
    /// The delays between its attempts (e.g. `["5s", "5m"]`), each one of the configured
    /// tiers; null: the operator's schedule.
    pub schedule: Option<Vec<String>>,
    /// Its deliveries older than this (e.g. `"1h"`) are dead-lettered as `expired`; null:
    /// `delivery.max_age`.
    pub max_age: Option<String>,
}

/// A webhook's own retry policy as a request sets it. In a create, absent and null both
/// mean the operator's; in an update, absent keeps the current value and null removes it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicyRequest {
    /// The delays between attempts, each one of the tiers of `delivery.retry_schedule`
    /// (e.g. `["5s", "5m"]`), in non-decreasing order, at most as many as configured; `[]`
    /// makes one attempt only; null: the operator's schedule.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub schedule: Option<Option<Vec<String>>>,
    /// A duration (e.g. `"1h"`), positive and at most `delivery.max_age`: a delivery
    /// older than this is dead-lettered as `expired` before its next attempt; null:
    /// `delivery.max_age`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub max_age: Option<Option<String>>,
}

/// What a certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateSummary {
    /// Its subject, e.g. `CN=acme-webhooks`.
    pub subject: String,
    /// The SHA-256 of the DER certificate, lower-case hex pairs joined by `:`.
    pub fingerprint_sha256: String,
    /// The end of its validity (RFC 3339).
    pub expires_at: String,
}

impl From<hookwire_http::client_tls::CertificateInfo> for CertificateSummary {
    fn from(info: hookwire_http::client_tls::CertificateInfo) -> Self {
        Self {
            subject: info.subject,
            fingerprint_sha256: info.fingerprint_sha256,
            expires_at: rfc3339(info.not_after_ms),
        }
    }
}

/// A public key receivers verify `v1a` signatures with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublicKeyInfo {
    /// `whpk_` and the base64 of the 32-byte Ed25519 public key.
    pub key: String,
    /// When a rotated-out key stops signing (RFC 3339); null for the current key.
    pub valid_until: Option<String>,
}

/// A webhook's circuit breaker and concurrency limit, on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Circuit {
    /// `closed` (attempts go ahead), `open` (deliveries are deferred without a request)
    /// or `half_open` (a few trial attempts decide).
    pub state: String,
    /// Failed share of the attempts in the window (closed) or of the trials so far
    /// (half-open), 0 to 1.
    pub failure_rate: f64,
    /// While open: when it turns half-open (ms since the epoch).
    pub open_until_ms: Option<u64>,
    /// Attempts this node lets be in flight to it now: its adaptive limit, at most its
    /// `max_concurrency` (or `delivery.per_endpoint_concurrency`). Read-only; null until
    /// this node has attempted it.
    #[serde(default)]
    pub concurrency_limit: Option<u64>,
    /// Attempts in flight to it on this node now; null until this node has attempted it.
    #[serde(default)]
    pub in_flight: Option<u64>,
}

impl Webhook {
    /// The webhook with its circuit on this node: closed, at rate 0, if this node has
    /// not attempted it yet.
    pub(crate) fn with_circuit(mut self, state: &ApiState) -> Self {
        self.circuit = state.circuits.as_ref().map(|c| {
            c.circuit(&self.id).unwrap_or(Circuit {
                state: "closed".to_owned(),
                failure_rate: 0.0,
                open_until_ms: None,
                concurrency_limit: None,
                in_flight: None,
            })
        });
        self
    }
}

/// A webhook and its signing secret: the answer to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The `whsec_…` secret that signs its deliveries. Shown only now.
    pub secret: String,
}

/// A page of webhooks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// The organization's webhooks, oldest first.
    pub webhooks: Vec<Webhook>,
    /// Pass it as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A page of the webhook listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (100).
    pub limit: Option<usize>,
}

/// The default page of the webhook listing.
pub(super) const DEFAULT_LIST_PAGE: usize = 100;
/// The largest page of the webhook listing.
pub(super) const MAX_LIST_PAGE: usize = 500;

/// A new webhook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// An http(s) URL without credentials.
    #[schema(max_length = 2048)]
    pub url: String,
    /// What it is for.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: String,
    /// Event types from `GET /v1/event-types`.
    #[schema(min_items = 1)]
    pub events: Vec<String>,
    /// Attempts in flight at once (1 to 1000); the server default when absent.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrency: Option<u32>,
    /// Deliveries per second (1 to 100000); unlimited when absent.
    #[schema(minimum = 1, maximum = 100000)]
    pub rate_limit_per_sec: Option<u32>,
    /// Static headers added to every request, by name (at most 20, 4 KiB in all). Names
    /// `webhook-*`, `content-type`, `content-length`, `host`, `user-agent` and hop-by-hop
    /// headers are reserved.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Like `headers`, for values that are secrets (an API key): sealed at rest like the
    /// signing secret, and never shown again.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, String>,
    /// Also sign with an Ed25519 key (`v1a` signatures next to `v1`); the public key is
    /// in the answer's `public_keys`.
    #[serde(default)]
    pub ed25519: bool,
    /// A CEL expression over `body` (the event's JSON) and `event_type`: only events for
    /// which it is true are delivered. At most 2,048 bytes.
    #[schema(max_length = 2048)]
    pub filter: Option<String>,
    /// A CEL expression over `body` and `event_type` whose value, a map or a list, is
    /// sent as the JSON body instead of the event's (`{"text": "Finished: " +
    /// body.report_run_url}` for a Slack incoming webhook). At most 4,096 bytes.
    #[schema(max_length = 4096)]
    pub transform: Option<String>,
    /// A client certificate (PEM, the webhook's own certificate first, then any
    /// intermediates) presented when the receiver asks for one; needs `client_key`.
    #[schema(max_length = 65536)]
    pub client_certificate: Option<String>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1): sealed at rest
    /// like the signing secret, never shown again.
    #[schema(value_type = Option<String>, max_length = 65536)]
    pub client_key: Option<PrivateKeyPem>,
    /// CA certificates (PEM) that may sign the receiver's certificate, for a receiver
    /// with a private CA, trusted besides the server's roots.
    #[schema(max_length = 65536)]
    pub ca_certificates: Option<String>,
    /// Its own retry policy, shorter than the operator's.
    pub retry: Option<RetryPolicyRequest>,
}

/// Changes to a webhook; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// A new URL; the test event is sent to it first.
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// A new description.
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// New event types.
    #[schema(min_items = 1)]
    pub events: Option<Vec<String>>,
    /// Enable or disable it. Enabling clears the reason hookwire disabled it for.
    pub enabled: Option<bool>,
    /// A new concurrency cap (1 to 1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrency: Option<u32>,
    /// A new rate limit (1 to 100000 per second).
    #[schema(minimum = 1, maximum = 100000)]
    pub rate_limit_per_sec: Option<u32>,
    /// The `version` you read: the change is refused (409 `conflict`) if the webhook has
    /// changed since. Without it, the change still fails rather than undo a change made
    /// while this request was in progress (e.g. during its test event).
    pub version: Option<u64>,
    /// Headers to set (a value) or remove (null); the others stay.
    pub headers: Option<BTreeMap<String, Option<String>>>,
    /// Secret headers to set (a value) or remove (null); the others stay.
    pub secret_headers: Option<BTreeMap<String, Option<String>>>,
    /// Turn Ed25519 `v1a` signatures on (a new key) or off (every key dropped).
    pub ed25519: Option<bool>,
    /// A new filter, or null to deliver every event again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 2048)]
    pub filter: Option<Option<String>>,
    /// A new transform, or null to send the event's body as it is again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 4096)]
    pub transform: Option<Option<String>>,
    /// A new client certificate (PEM), with `client_key`; null removes it and its key. A
    /// new `url` drops the current one unless this request sets it again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 65536)]
    pub client_certificate: Option<Option<String>>,
    /// The new client certificate's private key (PEM), with `client_certificate`.
    #[schema(value_type = Option<String>, max_length = 65536)]
    pub client_key: Option<PrivateKeyPem>,
    /// New CA certificates (PEM) for the receiver, or null to remove them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 65536)]
    pub ca_certificates: Option<Option<String>>,
    /// Changes to its own retry policy (absent parts stay), or null to use the operator's
    /// again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RetryPolicyRequest>)]
    pub retry: Option<Option<RetryPolicyRequest>>,
}

/// A private key (PEM) as a request carries it. `Debug` hides it, so that no log line of a
/// request shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct PrivateKeyPem(pub String);

impl std::fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

/// A field that may be absent (outer `None`) or null (inner `None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Whether to send the test event before saving.
#[derive(Debug, Deserialize, IntoParams)]
pub struct VerifyParam {
    /// `false` skips the test event: operators' tokens only (403 `verify_required` for a
    /// token limited to organizations, which could otherwise point a webhook anywhere the
    /// target policy allows without the receiver's consent). The URL is still checked
    /// against the target policy.
    pub verify: Option<bool>,
}

impl VerifyParam {
    /// Whether to send the test event; refuses `verify=false` to all but operators.
    pub(crate) fn test_event(&self, credential: &crate::auth::Credential) -> crate::Result<bool> {
        match (self.verify, credential) {
            (Some(false), crate::auth::Credential::Operator) => Ok(false),
            (Some(false), _) => Err(crate::ApiError::Forbidden {
                code: "verify_required",
                message: "only an operator's token may skip the test event (`verify=false`)".into(),
            }),
            _ => Ok(true),
        }
    }
}

/// What the receiver answered to a test event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestResult {
    /// True when it answered 2xx.
    pub delivered: bool,
    /// The HTTP status, if one came.
    pub status: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long the attempt took.
    pub latency_ms: u64,
}

/// A rotated Ed25519 key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedEd25519Key {
    /// The new `whpk_…` public key.
    pub public_key: String,
    /// Until then (RFC 3339) the previous key signs too.
    pub previous_valid_until: String,
}

/// A rotated secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedSecret {
    /// The new `whsec_…` secret. Shown only now.
    pub secret: String,
    /// Until then (RFC 3339) the previous secret signs too.
    pub previous_valid_until: String,
}

pub(crate) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl From<&Subscription> for Webhook {
    fn from(s: &Subscription) -> Self {
        Self {
            id: s.id,
            org: s.org.clone(),
            url: s.url.clone(),
            description: s.description.clone(),
            events: s.events.clone(),
            enabled: s.enabled,
            disabled_reason: s.disabled_reason.clone(),
            max_concurrency: s.max_concurrency,
            rate_limit_per_sec: s.rate_limit_per_sec,
            consecutive_failures: s.consecutive_failures,
            failing_since: s.failing_since_ms.map(rfc3339),
            last_success_at: s.last_success_ms.map(rfc3339),
            created_at: rfc3339(s.created_at_ms),
            updated_at: rfc3339(s.updated_at_ms),
            version: s.version,
            circuit: None,
            headers: s
                .headers
                .iter()
                .filter(|h| !h.secret)
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            secret_headers: s
                .headers
                .iter()
                .filter(|h| h.secret)
                .map(|h| h.name.clone())
                .collect(),
            public_keys: s
                .live_public_keys(now_ms())
                .map(|k| PublicKeyInfo {
                    key: k.public.to_string(),
                    valid_until: k.expires_at_ms.map(rfc3339),
                })
                .collect(),
            filter: s.filter.as_ref().map(|f| f.source().to_owned()),
            transform: s.transform.as_ref().map(|t| t.source().to_owned()),
            broken_reason: s.broken_reason.clone(),
            client_certificate: s
                .client_tls
                .identity
                .as_ref()
                .and_then(|i| hookwire_http::client_tls::describe(&i.cert_pem))
                .map(CertificateSummary::from),
            ca_certificates: s
                .client_tls
                .ca_pem
                .as_deref()
                .map(hookwire_http::client_tls::describe_all)
                .unwrap_or_default()
                .into_iter()
                .map(CertificateSummary::from)
                .collect(),
            retry: (!s.retry.is_empty()).then(|| RetryPolicyView {
                schedule: s
                    .retry
                    .schedule
                    .as_ref()
                    .map(|d| d.iter().copied().map(tier_name).collect()),
                max_age: s.retry.max_age.map(tier_name),
            }),
        }
    }
}
