//! A span exporter speaking OTLP/HTTP with JSON bodies (the OpenTelemetry protocol's
//! `ExportTraceServiceRequest`), on the same hyper-util and rustls client stack as the
//! deliveries, without their target policy: the collector is the operator's own.
//!
//! Spans are queued without waiting (a full queue drops the span and counts it) and sent
//! in batches by one background task, so a slow or absent collector never slows a
//! delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwire_core::trace::SpanContext;
use http::Uri;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::warn;

use crate::{Error, Result, tls_config};

/// Spans waiting to be sent; past this they are dropped.
const QUEUE: usize = 8192;
/// The most spans in one request.
const BATCH: usize = 512;
/// A span waits at most this long before its batch is sent.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// One export's timeout, from connecting to the last byte of the collector's answer: a
/// collector that stalls mid-answer must not wedge the exporter.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer read (it is only drained, for the connection's reuse);
/// a longer one is dropped with its connection.
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// At most one warning about failed exports this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What a span is, in OTLP's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Receiving a message: an event taken from the broker.
    Consumer,
    /// An outgoing request: one attempt.
    Client,
}

impl SpanKind {
    fn code(self) -> u8 {
        match self {
            Self::Client => 3,
            Self::Consumer => 5,
        }
    }
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
}

impl From<String> for AttributeValue {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}

impl From<&str> for AttributeValue {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    /// Its trace and own id.
    pub context: SpanContext,
    /// Its parent's id, when it has one.
    pub parent: Option<[u8; 8]>,
    /// Its name.
    pub name: &'static str,
    /// Its kind.
    pub kind: SpanKind,
    /// When it started, in ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// When it ended, in ns since the Unix epoch.
    pub end_unix_ns: u64,
    /// Its attributes.
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// `Some(message)`: it failed (status ERROR); `None`: status unset.
    pub error: Option<String>,
}

/// Nanoseconds since the Unix epoch, the clock of span times.
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The queue of spans to export; cheap to clone. Dropping the last clone sends what is
/// queued and ends the background task.
#[derive(Debug, Clone)]
pub struct Exporter {
    queue: mpsc::Sender<Span>,
    dropped: Arc<AtomicU64>,
}

impl Exporter {
    /// Starts the background task that POSTs batches to `traces_url`
    /// (`<endpoint>/v1/traces`), naming the service `service_name`. Needs a Tokio runtime.
    pub fn start(traces_url: &str, service_name: &str) -> Result<Self> {
        Self::start_with_timeout(traces_url, service_name, EXPORT_TIMEOUT)
    }

    fn start_with_timeout(
        traces_url: &str,
        service_name: &str,
        export_timeout: Duration,
    ) -> Result<Self> {
        let uri: Uri = traces_url
            .parse()
            .map_err(|e| Error::Config(format!("tracing.otlp_endpoint: {e}")))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(export_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(None)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(https);
        let (queue, spans) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let sender = Sender {
            client,
            uri,
            resource: resource(service_name),
            dropped: dropped.clone(),
            export_timeout,
            reported_dropped: 0,
            last_warning: None,
        };
        tokio::spawn(sender.run(spans));
        Ok(Self { queue, dropped })
    }

    /// Queues a finished span; drops it when the queue is full.
    pub fn export(&self, span: Span) {
        if self.queue.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans dropped so far: queued past [`QUEUE`] or refused by the collector.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

type ExportClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Sender {
    client: ExportClient,
    uri: Uri,
    resource: Value,
    dropped: Arc<AtomicU64>,
    export_timeout: Duration,
    reported_dropped: u64,
    last_warning: Option<Instant>,
}

impl Sender {
    async fn run(mut self, mut spans: mpsc::Receiver<Span>) {
        let mut batch = Vec::with_capacity(BATCH);
        // The first span of a batch waits for more for at most BATCH_DELAY.
        while let Some(first) = spans.recv().await {
            batch.push(first);
            let due = tokio::time::Instant::now() + BATCH_DELAY;
            while batch.len() < BATCH {
                match tokio::time::timeout_at(due, spans.recv()).await {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) | Err(_) => break,
                }
            }
            self.send(&batch).await;
            batch.clear();
        }
    }

    async fn send(&mut self, batch: &[Span]) {
        let body = encode(&self.resource, batch);
        let request = http::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, hookwire_core::USER_AGENT)
            .body(Full::new(Bytes::from(body)));
        let result = match request {
            Ok(request) => {
                let exchange = async {
                    let response = self
                        .client
                        .request(request)
                        .await
                        .map_err(|e| crate::error_chain(&e))?;
                    let status = response.status();
                    // Drained so that the connection goes back to the pool.
                    let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                        .collect()
                        .await;
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("the collector answered {status}"))
                    }
                };
                tokio::time::timeout(self.export_timeout, exchange)
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "no complete answer within {}s",
                            self.export_timeout.as_secs_f64()
                        ))
                    })
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = &result {
            self.dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.warn(Some(error));
        } else {
            self.warn(None);
        }
    }

    /// Warns of spans dropped since the last warning (queue full or export failed), at
    /// most once a minute.
    fn warn(&mut self, error: Option<&String>) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped == self.reported_dropped
            || self
                .last_warning
                .is_some_and(|at| at.elapsed() < WARN_EVERY)
        {
            return;
        }
        self.last_warning = Some(Instant::now());
        self.reported_dropped = dropped;
        match error {
            Some(error) => {
                warn!(url = %self.uri, %error, dropped_in_all = dropped, "Cannot export spans over OTLP; they are dropped (logged at most once a minute).")
            }
            None => warn!(
                dropped_in_all = dropped,
                "Spans dropped: the OTLP export queue was full (logged at most once a minute)."
            ),
        }
    }
}

fn resource(service_name: &str) -> Value {
    json!({
        "attributes": [
            {"key": "service.name", "value": {"stringValue": service_name}},
            {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
        ]
    })
}

/// The OTLP/JSON `ExportTraceServiceRequest` of `spans`: ids in hex, times as decimal
/// strings (64-bit integers), enums as numbers, as the OTLP/JSON encoding specifies.
pub fn encode(resource: &Value, spans: &[Span]) -> Vec<u8> {
    let spans: Vec<Value> = spans.iter().map(span_json).collect();
    let request = json!({
        "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{
                "scope": {"name": "hookwire", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

fn span_json(span: &Span) -> Value {
    let attributes: Vec<Value> = span
        .attributes
        .iter()
        .map(|(key, value)| {
            let value = match value {
                AttributeValue::Str(s) => json!({"stringValue": s}),
                AttributeValue::Int(n) => json!({"intValue": n.to_string()}),
            };
            json!({"key": key, "value": value})
        })
        .collect();
    let status = match &span.error {
        Some(message) => json!({"code": 2, "message": message}),
        None => json!({}),
    };
    let mut value = json!({
        "traceId": span.context.trace_id_hex(),
        "spanId": span.context.span_id_hex(),
        "flags": u32::from(span.context.flags),
        "name": span.name,
        "kind": span.kind.code(),
        "startTimeUnixNano": span.start_unix_ns.to_string(),
        "endTimeUnixNano": span.end_unix_ns.to_string(),
        "attributes": attributes,
        "status": status,
    });
    if let Some(parent) = span.parent {
        value["parentSpanId"] = Value::String(hex_of(&parent));
    }
    value
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback collector whose first answer never ends (its head promises a body it
    /// never sends) and which answers every later request at once: counts requests.
    async fn stalling_collector() -> (String, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/v1/traces", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicU64::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let n = seen.fetch_add(1, Ordering::Relaxed);
                let mut buf = vec![0; 64 << 10];
                let _ = socket.read(&mut buf).await;
                if n == 0 {
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n{")
                        .await;
                    held.push(socket);
                } else {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                        )
                        .await;
                }
            }
        });
        (url, requests)
    }

    fn span() -> Span {
        Span {
            context: SpanContext::new_root(),
            parent: None,
            name: "event",
            kind: SpanKind::Consumer,
            start_unix_ns: 1,
            end_unix_ns: 2,
            attributes: Vec::new(),
            error: None,
        }
    }

    #[tokio::test]
    async fn a_collector_that_stalls_mid_answer_does_not_wedge_the_exporter() {
        let (url, requests) = stalling_collector().await;
        let exporter = Exporter::start_with_timeout(&url, "hookwire", Duration::from_millis(300))
            .expect("starts");
        exporter.export(span());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // Every later span is exported too, once the stalled answer has timed out.
        while requests.load(Ordering::Relaxed) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the exporter is stuck on the stalled answer"
            );
            exporter.export(span());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            exporter.dropped() >= 1,
            "the stalled batch counts as dropped"
        );
    }

    #[test]
    fn spans_encode_as_otlp_json() {
        let parent = SpanContext::new_root();
        let context = parent.new_child();
        let span = Span {
            context,
            parent: Some(parent.span_id),
            name: "webhook attempt",
            kind: SpanKind::Client,
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: 1_700_000_000_250_000_000,
            attributes: vec![
                ("hookwire.attempt", AttributeValue::Int(2)),
                ("hookwire.org", AttributeValue::Str("acme".into())),
            ],
            error: Some("receiver answered 500".into()),
        };
        let body: Value =
            serde_json::from_slice(&encode(&resource("hookwire"), &[span])).expect("json");
        let resource_spans = &body["resourceSpans"][0];
        assert_eq!(
            resource_spans["resource"]["attributes"][0]["value"]["stringValue"],
            "hookwire"
        );
        let span = &resource_spans["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], parent.trace_id_hex());
        assert_eq!(span["spanId"], context.span_id_hex());
        assert_eq!(span["parentSpanId"], parent.span_id_hex());
        assert_eq!(span["kind"], 3);
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(span["attributes"][0]["value"]["intValue"], "2");
        assert_eq!(span["attributes"][1]["value"]["stringValue"], "acme");
        assert_eq!(span["status"]["code"], 2);
    }
}
