//! hookwire-http: one HTTP attempt at a webhook URL: sign, POST, read at most 4 KiB back,
//! classify. Deliveries and the API's test events both go through [`Deliverer`].
//!
//! The client follows no redirects, takes no proxy from the environment, and resolves
//! names through [`PolicyResolver`], so it only ever connects to addresses the target
//! policy allows; with `delivery.proxy` it tunnels to those same checked addresses
//! through the proxy ([`egress`]). It is hyper-util's pooled client over rustls (platform
//! roots plus `delivery.ca_file`), without reqwest's per-request layers
//! (docs/architecture.md, "Outbound HTTP"). A webhook with its own client certificate or
//! CA bundle ([`client_tls`]) gets a client of its own, so that its connections are never
//! shared with another identity.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hookwire_core::outcome::classify;
use hookwire_core::trace::{TRACEPARENT, TRACESTATE, TraceParent};
use hookwire_core::{AttemptFailure, Outcome, Subscription, TargetError, TargetPolicy};
use http::Uri;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub mod client_tls;
pub mod egress;
mod error;
pub mod otlp;

pub use egress::{Proxy, ProxyCredentials};
pub use error::{Error, Result};

/// At most this much of a response body is read: enough for an error message, never a
/// receiver-sized allocation.
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// Distinct target URLs kept parsed; past this the cache starts over.
const MAX_CACHED_TARGETS: usize = 4096;

// Named once: a header name given as text is parsed on every request.
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
/// The headers every attempt sends: content type, user agent, and the three above.
const STANDARD_HEADERS: usize = 5;
/// `traceparent` and `tracestate`, when the task carries a trace.
const TRACE_HEADERS: usize = 2;

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Distinct webhook TLS settings (client certificate, CA bundle) that keep a client, and
/// so a connection pool, of their own; past this the cache starts over, closing their
/// idle connections.
const MAX_TLS_CLIENTS: usize = 256;

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

type Connector = HttpsConnector<egress::Egress>;
type HttpClient = Client<Connector, Full<Bytes>>;

/// Makes signed attempts under the target policy.
#[derive(Debug, Clone)]
pub struct Deliverer {
    /// The client of every webhook without TLS settings of its own.
    client: HttpClient,
    /// What a webhook's own client is built from.
    tls: client_tls::TlsBase,
    egress: egress::Egress,
    /// Clients of webhooks with a client certificate or CA bundle, by
    /// [`client_tls::settings_key`]: one pool per identity, so a connection made with one
    /// webhook's certificate never carries another webhook's request.
    tls_clients: Arc<Mutex<HashMap<[u8; 32], HttpClient>>>,
    policy: Arc<TargetPolicy>,
    /// URLs that passed the policy, by their text. The policy is fixed for the
    /// deliverer's life, and parsing a URL (IDNA included) cost more per attempt than
    /// signing it.
    targets: Arc<RwLock<HashMap<String, Uri>>>,
    timeout: Duration,
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
    /// The proxy every attempt leaves through; `None`: straight to the target.
    pub proxy: Option<Proxy>,
}

impl Deliverer {
    /// Builds the HTTP client.
    pub fn new(config: DelivererConfig) -> Result<Self> {
        let policy = Arc::new(config.policy);
        let mut http = HttpConnector::new_with_resolver(PolicyResolver {
            policy: policy.clone(),
            timeout: config.timeout,
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let egress = match config.proxy {
            None => egress::Egress::Direct(http),
            Some(proxy) => egress::Egress::Proxied(Arc::new(egress::Proxied::new(
                proxy,
                policy.clone(),
                config.timeout,
            )?)),
        };
        let tls = client_tls::TlsBase::new(config.ca_pem.as_deref())?;
        Ok(Self {
            client: http_client(tls_config(config.ca_pem.as_deref())?, egress.clone()),
            tls,
            egress,
            tls_clients: Arc::default(),
            policy,
            targets: Arc::default(),
            timeout: config.timeout,
            retry_client_errors: config.retry_client_errors,
        })
    }

    /// The timeout of one attempt, which bounds its DNS lookup too.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `body` to the subscription's URL, signed with its current secrets.
    pub async fn attempt(
        &self,
        sub: &Subscription,
        webhook_id: &str,
        body: &[u8],
    ) -> AttemptReport {
        self.attempt_in_trace(sub, webhook_id, body, None).await
    }

    /// [`Deliverer::attempt`], with the W3C `traceparent` (and `tracestate`) of `trace`
    /// on the request when there is one.
    pub async fn attempt_in_trace(
        &self,
        sub: &Subscription,
        webhook_id: &str,
        body: &[u8],
        trace: Option<&TraceParent>,
    ) -> AttemptReport {
        let started = Instant::now();
        let result = match self.check_literal_target(&sub.url) {
            Ok(uri) => {
                self.exchange(uri, sub, webhook_id, body, trace, started)
                    .await
            }
            Err(refused) => Err((AttemptFailure::TargetRefused, refused.to_string())),
        };
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
    }

    /// Sends the signed request and reads the status, `Retry-After` and the body's start,
    /// all within the attempt's timeout. A body that breaks or stalls after the status
    /// does not change the verdict.
    async fn exchange(
        &self,
        uri: Uri,
        sub: &Subscription,
        webhook_id: &str,
        body: &[u8],
        trace: Option<&TraceParent>,
        started: Instant,
    ) -> Result<(u16, Option<String>, String), (AttemptFailure, String)> {
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = sub.signature_header(webhook_id, timestamp, body, hookwire_core::now_ms());
        let mut request = http::Request::post(uri);
        if let Some(headers) = request.headers_mut() {
            headers.reserve(STANDARD_HEADERS + sub.headers.len() + TRACE_HEADERS);
        }
        // The webhook's own headers were checked when set: none can replace those below.
        for custom in &sub.headers {
            request = request.header(custom.name.as_str(), custom.value.as_str());
        }
        if let Some(trace) = trace {
            request = request.header(TRACEPARENT, trace.context.traceparent());
            if let Some(state) = &trace.state {
                request = request.header(TRACESTATE, state.as_str());
            }
        }
        let request = request
            .header(CONTENT_TYPE, APPLICATION_JSON)
            .header(
                USER_AGENT,
                HeaderValue::from_static(hookwire_core::USER_AGENT),
            )
            .header(WEBHOOK_ID, webhook_id)
            .header(WEBHOOK_TIMESTAMP, timestamp)
            .header(WEBHOOK_SIGNATURE, signature)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| {
                (
                    AttemptFailure::Other,
                    format!("cannot build the request: {e}"),
                )
            })?;
        let client = self.client_for(sub)?;
        let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(failure_of(&e)),
            Err(_) => {
                let secs = self.timeout.as_secs_f64();
                return Err((AttemptFailure::Timeout, format!("no answer within {secs}s")));
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut response_body = response.into_body();
        let mut excerpt = Vec::new();
        // Read no more than the cap; dropping the body closes one that goes on.
        while excerpt.len() < MAX_RESPONSE_BYTES {
            match tokio::time::timeout_at(deadline, response_body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(chunk) = frame.data_ref() {
                        let room = MAX_RESPONSE_BYTES - excerpt.len();
                        excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                Ok(None | Some(Err(_))) | Err(_) => break,
            }
        }
        Ok((status, retry_after, excerpt_of(&excerpt)))
    }

    /// The client of `sub`'s TLS settings: the shared one when it has none, else its own,
    /// built once (settings that cannot be used fail the attempt, not the process).
    fn client_for(
        &self,
        sub: &Subscription,
    ) -> Result<Cow<'_, HttpClient>, (AttemptFailure, String)> {
        if sub.client_tls.is_empty() {
            return Ok(Cow::Borrowed(&self.client));
        }
        let key = client_tls::settings_key(&sub.client_tls);
        let mut clients = self.tls_clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(Cow::Owned(client.clone()));
        }
        let tls = self.tls.config(Some(&sub.client_tls)).map_err(|e| {
            (
                AttemptFailure::Tls,
                format!("the webhook's TLS settings cannot be used: {e}"),
            )
        })?;
        let client = http_client(tls, self.egress.clone());
        if clients.len() >= MAX_TLS_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(Cow::Owned(client))
    }

    /// Literal IPs never reach the resolver, so they are checked here, before connecting.
    /// The parsed URL is what gets requested, so it is parsed once.
    fn check_literal_target(&self, text: &str) -> Result<Uri, TargetError> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        if let Some(uri) = targets.get(text) {
            return Ok(uri.clone());
        }
        drop(targets);
        let url = self.policy.check_url(text)?;
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e: http::uri::InvalidUri| TargetError::Invalid(e.to_string()))?;
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        if targets.len() >= MAX_CACHED_TARGETS {
            targets.clear();
        }
        targets.insert(text.to_owned(), uri.clone());
        Ok(uri)
    }
}

/// rustls with the platform's roots plus those of `ca_pem` (PEM), presenting no client
/// certificate.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig> {
    client_tls::TlsBase::new(ca_pem)?
        .config(None)
        .map_err(|e| Error::Config(format!("TLS: {e}")))
}

/// hyper-util's pooled client over `egress`, speaking TLS with `tls` (ALPN offers h2 and
/// http/1.1).
fn http_client(tls: rustls::ClientConfig, egress: egress::Egress) -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(egress);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(https)
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

fn failure_of(error: &hyper_util::client::legacy::Error) -> (AttemptFailure, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<TargetError>() {
            return (AttemptFailure::TargetRefused, refused.to_string());
        }
        source = e.source();
    }
    if is_tls(error) {
        // The chain alone can read as a broken connection ("connection error: received
        // fatal alert: …"): say where it broke.
        return (
            AttemptFailure::Tls,
            format!("TLS handshake failed: {}", error_chain(error)),
        );
    }
    let kind = if error.is_connect() {
        AttemptFailure::Connect
    } else {
        AttemptFailure::Other
    };
    (kind, error_chain(error))
}

/// Whether rustls failed somewhere in `error`'s chain: the handshake, on connect, or the
/// receiver's alert read with the answer (under TLS 1.3 a server refuses a client
/// certificate after the client's side of the handshake is done). An I/O error carries
/// rustls' error inside it rather than as its source.
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<rustls::Error>()
            || e.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = e.source();
    }
    false
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
#[derive(Debug, Clone)]
struct PolicyResolver {
    policy: Arc<TargetPolicy>,
    /// The attempt timeout: a lookup may not take longer than the whole attempt.
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            Ok(resolve_allowed_within(&policy, name.as_str(), timeout)
                .await?
                .into_iter())
        })
    }
}

/// Resolves `host` and keeps the addresses the policy allows; refuses the name when none
/// is left, or before any DNS query when only allowed ranges may be targeted. Webhook
/// creation runs this too, so a URL is judged the same way at create and at delivery.
pub async fn resolve_allowed(
    policy: &TargetPolicy,
    host: &str,
) -> Result<Vec<SocketAddr>, BoxError> {
    policy.check_host_name(host)?;
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    keep_allowed(policy, host, resolved)
}

/// [`resolve_allowed`] within `limit`: the system resolver has no deadline of its own,
/// and a lookup that never answers must not hold a test event or a delivery forever.
pub async fn resolve_allowed_within(
    policy: &TargetPolicy,
    host: &str,
    limit: Duration,
) -> Result<Vec<SocketAddr>, BoxError> {
    resolve_allowed_by(policy, host, limit, |host| async move {
        Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect())
    })
    .await
}

/// [`resolve_allowed_within`] with `lookup` as the resolver: the system resolver in
/// production, one that never answers in the tests (the system resolver can only be
/// pointed at another DNS server machine-wide).
async fn resolve_allowed_by<F, Fut>(
    policy: &TargetPolicy,
    host: &str,
    limit: Duration,
    lookup: F,
) -> Result<Vec<SocketAddr>, BoxError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Vec<SocketAddr>, BoxError>>,
{
    policy.check_host_name(host)?;
    let resolved = within(limit, host, lookup(host.to_owned())).await?;
    keep_allowed(policy, host, resolved)
}

/// Bounds a lookup's future by `limit`.
async fn within<T>(
    limit: Duration,
    host: &str,
    lookup: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, BoxError> {
    match tokio::time::timeout(limit, lookup).await {
        Ok(result) => result,
        Err(_) => Err(Box::new(DnsTimeout {
            host: host.to_owned(),
            limit,
        })),
    }
}

/// A DNS lookup that did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup of `{host}` did not answer within {}s", limit.as_secs_f64())]
pub struct DnsTimeout {
    host: String,
    limit: Duration,
}

fn keep_allowed(
    policy: &TargetPolicy,
    host: &str,
    resolved: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, BoxError> {
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
        let refusal = first_refusal.unwrap_or(TargetError::NoHost);
        // The address stays in the server's log; the error's text leaves it out.
        tracing::debug!(host, addr = ?refusal.refused_addr(), error = %refusal, "Target refused.");
        return Err(Box::new(refusal));
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests;
