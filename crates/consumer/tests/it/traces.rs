//! Tracing from producer to receiver: the producer's W3C `traceparent` (AMQP header)
//! reaches the webhook request through fan-out and retries, and with
//! `tracing.otlp_endpoint` set hookwire exports an event span and an attempt span per
//! attempt in that trace, to a loopback OTLP/HTTP receiver that decodes them.

use std::time::Duration;

use hookwire_amqp::OutgoingEvent;
use hookwire_amqp::wire::with_trace;
use hookwire_core::trace::{SpanContext, TraceParent};
use hookwire_testkit::{Harness, Receiver, Recorded, Reply, eventually, new_subscription, tools};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const PRODUCER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const PIKA_PRODUCER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const STATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";

/// One exported span, as decoded from OTLP/JSON.
#[derive(Debug, Clone)]
struct Exported {
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    name: String,
    kind: u64,
    attributes: Value,
    error: bool,
}

impl Exported {
    fn attribute(&self, key: &str) -> Option<String> {
        let value = self
            .attributes
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)?["value"]
            .clone();
        value["stringValue"]
            .as_str()
            .or(value["intValue"].as_str())
            .map(str::to_owned)
    }
}

/// Every span the collector got, checking each request's shape on the way.
fn exported(collector: &Receiver) -> Vec<Exported> {
    let mut spans = Vec::new();
    for request in collector.requests() {
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.header("content-type"), "application/json");
        let body: Value = serde_json::from_slice(&request.body).expect("OTLP/JSON");
        for resource in body["resourceSpans"].as_array().expect("resourceSpans") {
            assert_eq!(
                resource["resource"]["attributes"][0]["value"]["stringValue"],
                "hookwire-test"
            );
            for scope in resource["scopeSpans"].as_array().expect("scopeSpans") {
                for span in scope["spans"].as_array().expect("spans") {
                    spans.push(Exported {
                        trace_id: span["traceId"].as_str().expect("traceId").to_owned(),
                        span_id: span["spanId"].as_str().expect("spanId").to_owned(),
                        parent: span["parentSpanId"].as_str().map(str::to_owned),
                        name: span["name"].as_str().expect("name").to_owned(),
                        kind: span["kind"].as_u64().expect("kind"),
                        attributes: span["attributes"].clone(),
                        error: span["status"]["code"] == 2,
                    });
                }
            }
        }
    }
    spans
}

fn event(id: &str) -> OutgoingEvent {
    let mut data = serde_json::Map::new();
    data.insert(
        "report_run_url".into(),
        format!("https://mode.test/runs/{id}").into(),
    );
    OutgoingEvent {
        org: "acme".into(),
        event_type: "report_run_completed".into(),
        id: id.into(),
        data,
    }
}

fn requests_of<'a>(requests: &'a [Recorded], id: &str) -> Vec<&'a Recorded> {
    let marker = format!("runs/{id}\"");
    requests
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(&marker))
        .collect()
}

/// The request's `traceparent`, which must be valid.
fn context_of(request: &Recorded) -> SpanContext {
    SpanContext::parse(request.header("traceparent"))
        .unwrap_or_else(|| panic!("no valid traceparent: {:?}", request.headers))
}

#[tokio::test]
async fn the_producers_trace_reaches_the_receiver_and_the_collector() {
    let collector = Receiver::ok().await;
    // The first attempt of `traced` fails, so that its retry shows in the trace too.
    let fail_first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let receiver = Receiver::start({
        let fail_first = fail_first.clone();
        move |_, request| {
            let traced = String::from_utf8_lossy(&request.body).contains("runs/traced\"");
            if traced && fail_first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                Reply::status(500)
            } else {
                Reply::status(200)
            }
        }
    })
    .await;
    let endpoint = format!("http://{}", collector.addr());
    let h = Harness::start(|c| {
        c.tracing.otlp_endpoint = endpoint;
        c.tracing.service_name = "hookwire-test".into();
    })
    .await;
    h.subscribe(&new_subscription(
        "acme",
        &receiver.url(),
        &["report_run_completed"],
    ));
    let producer = TraceParent::from_headers(Some(PRODUCER), Some(STATE)).expect("valid");

    // Through the Rust producer, retried once.
    h.producer
        .publish_in_trace(&event("traced"), Some(&producer))
        .await
        .expect("published");
    // Through pika, as any AMQP producer sends it.
    tools::run_ok(
        std::process::Command::new(tools::python())
            .arg(tools::repo_root().join("tests/py/publish_pika.py"))
            .args([
                "--url",
                &h.config.amqp.url,
                "--namespace",
                h.namespace(),
                "--org",
                "acme",
                "--event",
                "report_run_completed",
                "--data",
                r#"{"report_run_url":"https://mode.test/runs/pika"}"#,
                "--id",
                "pika",
                "--traceparent",
                PIKA_PRODUCER,
            ]),
    );
    // A malformed traceparent is ignored: hookwire starts a new trace.
    let (body, props) = h.producer.encode(&event("malformed")).expect("encodes");
    let malformed = TraceParent {
        context: SpanContext::parse(PRODUCER).expect("valid"),
        state: None,
    };
    let props = with_trace(props, &malformed);
    let mut headers = props.headers().clone().unwrap_or_default();
    hookwire_amqp::headers::set_text(
        &mut headers,
        "traceparent",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    );
    h.broker
        .publish_raw(
            h.namespace(),
            "report_run_completed",
            &body,
            props.with_headers(headers),
        )
        .await;

    let requests = receiver.wait_for(4, WAIT).await;

    // The traced event: two attempts, each a child of its own attempt span in the
    // producer's trace, with the producer's tracestate passed on.
    let traced = requests_of(&requests, "traced");
    assert_eq!(traced.len(), 2, "one failed attempt and its retry");
    let producer_context = producer.context;
    let attempts: Vec<SpanContext> = traced.iter().map(|r| context_of(r)).collect();
    for (request, context) in traced.iter().zip(&attempts) {
        assert_eq!(context.trace_id, producer_context.trace_id);
        assert_ne!(context.span_id, producer_context.span_id);
        assert!(context.sampled());
        assert_eq!(request.header("tracestate"), STATE);
    }
    assert_ne!(attempts[0].span_id, attempts[1].span_id);

    let pika = requests_of(&requests, "pika");
    assert_eq!(pika.len(), 1);
    let pika_context = context_of(pika[0]);
    let pika_producer = SpanContext::parse(PIKA_PRODUCER).expect("valid");
    assert_eq!(pika_context.trace_id, pika_producer.trace_id);
    assert_eq!(pika[0].header("tracestate"), "");

    let malformed = requests_of(&requests, "malformed");
    assert_eq!(malformed.len(), 1);
    let fresh = context_of(malformed[0]);
    assert_ne!(
        fresh.trace_id, producer_context.trace_id,
        "a new root trace"
    );

    // The spans: per trace, one event span under the producer's span and an attempt span
    // per request, under the event span, whose id is the request's parent.
    let spans = eventually(WAIT, "the spans of three events", || async {
        let spans = exported(&collector);
        let attempts = spans
            .iter()
            .filter(|s| s.name == "hookwire attempt")
            .count();
        let events = spans.iter().filter(|s| s.name == "hookwire event").count();
        (attempts >= 4 && events >= 3).then_some(spans)
    })
    .await;
    let check_trace =
        |trace: &SpanContext, parent: Option<&SpanContext>, requests: &[SpanContext]| {
            let in_trace: Vec<&Exported> = spans
                .iter()
                .filter(|s| s.trace_id == trace.trace_id_hex())
                .collect();
            let events: Vec<&&Exported> = in_trace
                .iter()
                .filter(|s| s.name == "hookwire event")
                .collect();
            assert_eq!(events.len(), 1, "one event span: {in_trace:?}");
            let event = events[0];
            assert_eq!(event.kind, 5, "a consumer span");
            assert_eq!(event.parent, parent.map(SpanContext::span_id_hex));
            assert_eq!(event.attribute("hookwire.org").as_deref(), Some("acme"));
            assert_eq!(event.attribute("hookwire.deliveries").as_deref(), Some("1"));
            let mut attempts: Vec<&&Exported> = in_trace
                .iter()
                .filter(|s| s.name == "hookwire attempt")
                .collect();
            attempts.sort_by_key(|s| s.attribute("hookwire.attempt"));
            assert_eq!(attempts.len(), requests.len(), "{in_trace:?}");
            for (n, (span, request)) in attempts.iter().zip(requests).enumerate() {
                assert_eq!(span.kind, 3, "a client span");
                assert_eq!(span.parent.as_deref(), Some(event.span_id.as_str()));
                assert_eq!(span.span_id, request.span_id_hex(), "the request's parent");
                assert_eq!(
                    span.attribute("hookwire.attempt"),
                    Some((n + 1).to_string())
                );
            }
            attempts
                .iter()
                .map(|s| (s.error, s.attribute("http.response.status_code")))
                .collect::<Vec<_>>()
        };
    assert_eq!(
        check_trace(&producer_context, Some(&producer_context), &attempts),
        vec![
            (true, Some("500".to_owned())),
            (false, Some("200".to_owned()))
        ]
    );
    check_trace(&pika_producer, Some(&pika_producer), &[pika_context]);
    check_trace(&fresh, None, &[fresh]);
    assert!(
        exported(&collector).len() == 7,
        "nothing else exported: {:?}",
        exported(&collector)
    );
    assert!(h.dead_letters().is_empty());
    h.finish().await;
}

/// Off (the default) no span is built, and the producer's context is passed on to the
/// receiver unchanged; an event without one gets no `traceparent`. An unsampled trace
/// with export on is passed on the same way, and nothing is exported for it.
#[tokio::test]
async fn without_export_or_sampling_the_context_is_passed_on_unchanged() {
    let receiver = Receiver::ok().await;
    let collector = Receiver::ok().await;
    let off = Harness::start(|_| {}).await;
    assert!(!off.config.tracing.enabled());
    let endpoint = format!("http://{}", collector.addr());
    let on = Harness::start(|c| c.tracing.otlp_endpoint = endpoint).await;
    let unsampled = PRODUCER.replace("-01", "-00");
    for h in [&off, &on] {
        h.subscribe(&new_subscription(
            "acme",
            &receiver.url(),
            &["report_run_completed"],
        ));
    }
    let sampled = TraceParent::from_headers(Some(PRODUCER), Some(STATE)).expect("valid");
    let unsampled = TraceParent::from_headers(Some(&unsampled), None).expect("valid");
    off.producer
        .publish_in_trace(&event("off-traced"), Some(&sampled))
        .await
        .expect("published");
    off.producer
        .publish(&event("off-untraced"))
        .await
        .expect("published");
    on.producer
        .publish_in_trace(&event("on-unsampled"), Some(&unsampled))
        .await
        .expect("published");
    let requests = receiver.wait_for(3, WAIT).await;
    let only = |id: &str| {
        let found = requests_of(&requests, id);
        assert_eq!(found.len(), 1, "{id}");
        found[0].clone()
    };
    let traced = only("off-traced");
    assert_eq!(traced.header("traceparent"), PRODUCER);
    assert_eq!(traced.header("tracestate"), STATE);
    let untraced = only("off-untraced");
    assert!(!untraced.headers.contains_key("traceparent"));
    assert!(!untraced.headers.contains_key("tracestate"));
    let unsampled_request = only("on-unsampled");
    assert_eq!(
        unsampled_request.header("traceparent"),
        unsampled.context.traceparent()
    );
    // The exporter sends a batch within half a second of a span: give it several.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        collector.requests().is_empty(),
        "nothing exported: {:?}",
        exported(&collector)
    );
    off.finish().await;
    on.finish().await;
}
