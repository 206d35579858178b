//! One HTTP attempt: sign, POST, read at most 4 KiB back, classify.
//!
//! The client follows no redirects, takes no proxy from the environment, and resolves
//! names through [`PolicyResolver`], so it only ever connects to addresses the target
//! policy allows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use hookwire_core::outcome::classify;
use hookwire_core::{AttemptFailure, Outcome, Subscription, TargetError, TargetPolicy};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::{Error, Result};

/// At most this much of a response body is read (DESIGN.md, "Delivery flow").
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// Distinct target URLs kept parsed; past this the cache starts over.
const MAX_CACHED_TARGETS: usize = 4096;

/// What one attempt did.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// What it means for the delivery.
    pub outcome: Outcome,
    /// The HTTP status, when one was received.
    pub status: Option<u16>,
    /// The failure before any status, if any.
    pub failure: Option<AttemptFailure>,
    /// A short description of the failure, for logs and the dead letter's detail.
    pub error: Option<String>,
    /// From the first byte sent to the end of the body read.
    pub latency: Duration,
    /// The start of the response body, lossily decoded: at most [`MAX_RESPONSE_BYTES`] bytes.
    pub response_excerpt: String,
}

impl AttemptReport {
    /// One line for logs and dead-letter details.
    pub fn describe(&self) -> String {
        match (self.status, &self.error) {
            (Some(status), _) => format!("receiver answered {status}"),
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".into(),
        }
    }
}

/// Makes signed attempts under the target policy.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    /// URLs that passed the policy, by their text. The policy is fixed for the
    /// deliverer's life, and parsing a URL (IDNA included) cost more per attempt than
    /// signing it.
    targets: Arc<RwLock<HashMap<String, url::Url>>>,
    retry_client_errors: bool,
}

/// Everything that shapes an attempt.
#[derive(Debug, Clone)]
pub struct DelivererConfig {
    /// The target policy.
    pub policy: TargetPolicy,
    /// Timeout of the whole attempt.
    pub timeout: Duration,
    /// Extra CA certificates (PEM), besides the platform's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Retry 4xx other than 410.
    pub retry_client_errors: bool,
}

impl Deliverer {
    /// Builds the HTTP client.
    pub fn new(config: DelivererConfig) -> Result<Self> {
        let policy = Arc::new(config.policy);
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(hookwire_core::USER_AGENT)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }));
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("delivery.ca_file: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            policy,
            targets: Arc::default(),
            retry_client_errors: config.retry_client_errors,
        })
    }

    /// POSTs `body` to the subscription's URL, signed with its current secrets.
    pub async fn attempt(
        &self,
        sub: &Subscription,
        webhook_id: &str,
        body: &[u8],
    ) -> AttemptReport {
        let started = Instant::now();
        let finish = |result: Result<(u16, Option<String>, String), (AttemptFailure, String)>| {
            let latency = started.elapsed();
            match result {
                Ok((status, retry_after, excerpt)) => AttemptReport {
                    outcome: classify(
                        Ok((status, retry_after.as_deref())),
                        self.retry_client_errors,
                        SystemTime::now(),
                    ),
                    status: Some(status),
                    failure: None,
                    error: None,
                    latency,
                    response_excerpt: excerpt,
                },
                Err((failure, error)) => AttemptReport {
                    outcome: classify(Err(failure), self.retry_client_errors, SystemTime::now()),
                    status: None,
                    failure: Some(failure),
                    error: Some(error),
                    latency,
                    response_excerpt: String::new(),
                },
            }
        };
        let url = match self.check_literal_target(&sub.url) {
            Ok(url) => url,
            Err(refused) => {
                return finish(Err((AttemptFailure::TargetRefused, refused.to_string())));
            }
        };
        let now = SystemTime::now();
        let timestamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = hookwire_core::signing::signature_header(
            sub.signing_secrets(hookwire_core::now_ms()),
            webhook_id,
            timestamp,
            body,
        );
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec());
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return finish(Err(failure_of(&e))),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut excerpt = Vec::new();
        // Read no more than the cap; dropping the response closes a body that goes on.
        while excerpt.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - excerpt.len();
                    excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                // The status is in; a broken or slow body does not change the verdict.
                Err(_) => break,
            }
        }
        finish(Ok((status, retry_after, excerpt_of(&excerpt))))
    }

    /// Literal IPs never reach the resolver, so they are checked here, before connecting.
    /// The parsed URL is what gets requested, so it is parsed once.
    fn check_literal_target(&self, text: &str) -> Result<url::Url, TargetError> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        if let Some(url) = targets.get(text) {
            return Ok(url.clone());
        }
        drop(targets);
        let url = self.policy.check_url(text)?;
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        if targets.len() >= MAX_CACHED_TARGETS {
            targets.clear();
        }
        targets.insert(text.to_owned(), url.clone());
        Ok(url)
    }
}

/// The body's start as text of at most [`MAX_RESPONSE_BYTES`] bytes. Lossy decoding turns
/// each invalid byte, and a character cut at the cap, into a three-byte U+FFFD, so the text
/// is cut again, on a character boundary.
fn excerpt_of(body: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if text.len() > MAX_RESPONSE_BYTES {
        let mut end = MAX_RESPONSE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn failure_of(error: &reqwest::Error) -> (AttemptFailure, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<TargetError>() {
            return (AttemptFailure::TargetRefused, refused.to_string());
        }
        source = e.source();
    }
    let kind = if error.is_timeout() {
        AttemptFailure::Timeout
    } else if error.is_connect() {
        AttemptFailure::Connect
    } else {
        AttemptFailure::Other
    };
    (kind, error_chain(error))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Resolves names with the system resolver, then keeps only the addresses the policy
/// allows; a name with none left is refused before any connection.
#[derive(Debug)]
struct PolicyResolver {
    policy: Arc<TargetPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let allowed = resolve_allowed(&policy, name.as_str()).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Resolves `host` and keeps the addresses the policy allows; refuses the name when none
/// is left, or before any DNS query when only allowed ranges may be targeted. Webhook
/// creation runs this too, so a URL is judged the same way at create and at delivery.
pub async fn resolve_allowed(
    policy: &TargetPolicy,
    host: &str,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    policy.check_host_name(host)?;
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    let mut first_refusal = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match policy.check_addr(addr.ip()) {
            Ok(()) => true,
            Err(e) => {
                first_refusal.get_or_insert(e);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(Box::new(first_refusal.unwrap_or(TargetError::NoHost)));
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_target_is_judged_as_when_it_was_parsed() {
        let deliverer = Deliverer::new(DelivererConfig {
            policy: TargetPolicy::loopback_only(),
            timeout: Duration::from_secs(1),
            ca_pem: None,
            retry_client_errors: false,
        })
        .expect("deliverer builds");
        for _ in 0..2 {
            let url = deliverer
                .check_literal_target("http://127.0.0.1:9/hook")
                .expect("loopback is allowed");
            assert_eq!(url.as_str(), "http://127.0.0.1:9/hook");
            // Nothing is sent: these are only judged.
            for refused in [
                "http://10.0.0.1/hook",
                "http://example.com/hook",
                "ftp://127.0.0.1/",
            ] {
                assert!(
                    deliverer.check_literal_target(refused).is_err(),
                    "{refused}"
                );
            }
        }
        assert_eq!(
            deliverer.targets.read().unwrap().len(),
            1,
            "refusals are not kept"
        );
        for port in 0..=MAX_CACHED_TARGETS {
            deliverer
                .check_literal_target(&format!("http://127.0.0.1:{port}/"))
                .expect("loopback is allowed");
        }
        assert!(deliverer.targets.read().unwrap().len() <= MAX_CACHED_TARGETS);
    }

    #[test]
    fn the_excerpt_never_exceeds_the_cap() {
        let cap = MAX_RESPONSE_BYTES;
        let euro = "€".repeat(cap);
        let cases: [(&[u8], usize); 5] = [
            (b"ok", 2),
            (&[b'a'; MAX_RESPONSE_BYTES], cap),
            // 1365 whole characters, then one byte of the next: that byte is dropped.
            (&euro.as_bytes()[..cap], cap - 1),
            // Every invalid byte becomes a three-byte U+FFFD.
            (&[0xff; MAX_RESPONSE_BYTES], cap - cap % 3),
            (&[0xff; 10], 30),
        ];
        for (body, len) in cases {
            let excerpt = excerpt_of(body);
            assert_eq!(excerpt.len(), len, "body of {} bytes", body.len());
        }
        assert!(
            excerpt_of(&euro.as_bytes()[..cap])
                .chars()
                .all(|c| c == '€')
        );
    }
}
