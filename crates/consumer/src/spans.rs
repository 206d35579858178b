//! The spans hookwire exports over OTLP when `tracing.otlp_endpoint` is set: one per
//! event (`hookwire event`, a child of the producer's span) and one per attempt
//! (`hookwire attempt`, a child of its event's span, retries included). The webhook
//! request carries the attempt span's `traceparent`.
//!
//! Off (no exporter), or in a trace the producer did not sample, no span is built: the
//! producer's trace context is passed on unchanged, from the event to its tasks and to
//! the request.

use hookwire_amqp::wire::Task;
use hookwire_core::Event;
use hookwire_core::trace::{SpanContext, TraceParent};
use hookwire_http::AttemptReport;
use hookwire_http::otlp::{AttributeValue, Exporter, Span, SpanKind, now_unix_ns};

use crate::attempt_log::outcome_name;

/// Name of the span of one event's fan-out.
pub const EVENT_SPAN: &str = "hookwire event";
/// Name of the span of one attempt.
pub const ATTEMPT_SPAN: &str = "hookwire attempt";

/// Where spans go; `None`: nowhere, and none is built.
#[derive(Debug, Clone, Default)]
pub struct Spans(Option<Exporter>);

impl Spans {
    /// Spans go to `exporter`, if any.
    pub fn new(exporter: Option<Exporter>) -> Self {
        Self(exporter)
    }

    /// The span of `event`'s fan-out, under the producer's span (`producer`), or the root
    /// of a new trace when the producer sent no valid `traceparent`. `None` when spans
    /// are off or the producer's trace is not sampled.
    pub(crate) fn event(
        &self,
        producer: Option<&TraceParent>,
        event: &Event,
        routing_key: &str,
    ) -> Option<EventSpan> {
        let exporter = self.0.as_ref()?;
        let (context, parent) = match producer {
            Some(p) if !p.context.sampled() => return None,
            Some(p) => (p.context.new_child(), Some(p.context.span_id)),
            None => (SpanContext::new_root(), None),
        };
        Some(EventSpan {
            exporter: exporter.clone(),
            context,
            parent,
            start_unix_ns: now_unix_ns(),
            attributes: vec![
                ("messaging.system", "rabbitmq".into()),
                ("messaging.operation.type", "process".into()),
                ("messaging.destination.name", routing_key.to_owned().into()),
                ("messaging.message.id", event.id.clone().into()),
                ("hookwire.org", event.org.clone().into()),
                ("hookwire.event_type", event.event_type.clone().into()),
            ],
            error: None,
        })
    }

    /// The span of one attempt of `task`, under the span its trace names. `None` when
    /// spans are off, the task has no trace or its trace is not sampled.
    pub(crate) fn attempt(&self, task: &Task) -> Option<AttemptSpan> {
        let exporter = self.0.as_ref()?;
        let trace = task.trace.as_ref().filter(|t| t.context.sampled())?;
        Some(AttemptSpan {
            exporter: exporter.clone(),
            on_request: TraceParent {
                context: trace.context.new_child(),
                state: trace.state.clone(),
            },
            parent: trace.context.span_id,
            start_unix_ns: now_unix_ns(),
        })
    }
}

/// The trace context of an event's tasks: under the event's span when there is one, else
/// the producer's, unchanged.
pub(crate) fn tasks_trace(
    span: Option<&EventSpan>,
    producer: Option<TraceParent>,
) -> Option<TraceParent> {
    match span {
        Some(span) => Some(TraceParent {
            context: span.context,
            state: producer.and_then(|p| p.state),
        }),
        None => producer,
    }
}

/// An event's span, exported when dropped: its end is when the handler let go of it.
#[derive(Debug)]
pub(crate) struct EventSpan {
    exporter: Exporter,
    context: SpanContext,
    parent: Option<[u8; 8]>,
    start_unix_ns: u64,
    attributes: Vec<(&'static str, AttributeValue)>,
    error: Option<String>,
}

impl EventSpan {
    /// Records how many deliveries the event fanned out to (after filters).
    pub(crate) fn deliveries(&mut self, n: usize) {
        self.attributes.push((
            "hookwire.deliveries",
            AttributeValue::Int(i64::try_from(n).unwrap_or(i64::MAX)),
        ));
    }
}

/// Marks an event's fan-out failed (the event will be redelivered), when it has a span.
pub(crate) fn failed(span: &mut Option<EventSpan>, error: &dyn std::fmt::Display) {
    if let Some(span) = span {
        span.error = Some(error.to_string());
    }
}

impl Drop for EventSpan {
    fn drop(&mut self) {
        self.exporter.export(Span {
            context: self.context,
            parent: self.parent,
            name: EVENT_SPAN,
            kind: SpanKind::Consumer,
            start_unix_ns: self.start_unix_ns,
            end_unix_ns: now_unix_ns(),
            attributes: std::mem::take(&mut self.attributes),
            error: self.error.take(),
        });
    }
}

/// One attempt's span, exported by [`AttemptSpan::finish`].
#[derive(Debug)]
pub(crate) struct AttemptSpan {
    exporter: Exporter,
    /// The context the request carries: this span's.
    pub(crate) on_request: TraceParent,
    parent: [u8; 8],
    start_unix_ns: u64,
}

impl AttemptSpan {
    /// Exports the span with what the attempt did.
    pub(crate) fn finish(self, task: &Task, webhook_id: &str, report: &AttemptReport) {
        let outcome = outcome_name(report.outcome);
        let mut attributes = vec![
            ("hookwire.webhook_id", webhook_id.to_owned().into()),
            (
                "hookwire.subscription_id",
                task.subscription_id.to_string().into(),
            ),
            ("hookwire.org", task.org.clone().into()),
            ("hookwire.event_id", task.event_id.clone().into()),
            ("hookwire.event_type", task.event_type.clone().into()),
            (
                "hookwire.attempt",
                AttributeValue::Int(i64::from(task.attempts) + 1),
            ),
            ("hookwire.outcome", outcome.to_owned().into()),
            ("http.request.method", "POST".to_owned().into()),
        ];
        if let Some(status) = report.status {
            attributes.push((
                "http.response.status_code",
                AttributeValue::Int(status.into()),
            ));
        }
        let delivered = matches!(report.outcome, hookwire_core::Outcome::Delivered);
        self.exporter.export(Span {
            context: self.on_request.context,
            parent: Some(self.parent),
            name: ATTEMPT_SPAN,
            kind: SpanKind::Client,
            start_unix_ns: self.start_unix_ns,
            end_unix_ns: now_unix_ns(),
            attributes,
            error: (!delivered).then(|| report.describe()),
        });
    }
}
