//! What happens to one message: an event fans out to its subscribers, a task makes one
//! more attempt, and every outcome is made durable before the message may be acked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use hookwire_amqp::wire::{self, Task};
use hookwire_amqp::{Names, Publisher, Topology, headers};
use hookwire_core::disposition::{BeforeAttempt, Decision, Disable, Disposition, ParkCause};
use hookwire_core::event::{self, PUBLISHED_AT_HEADER, RawEvent};
use hookwire_core::retry::tier_name;
use hookwire_core::{
    Catalog, DeadReason, DeliveryRules, FilterInput, Outcome, Subscription, Transformed, now_ms,
};
use hookwire_store::{Change, Store, Writer};
use lapin::message::Delivery;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

mod admit;
mod effects;
mod expressions;
mod fair;
mod fanout;
mod redelivery;
mod tasks;

use self::fair::FairPermits;
use crate::Result;
use crate::attempt_log::AttemptLog;
use crate::attempt_log::{attempt_record, outcome_name};
use crate::endpoints::{EndpointLimits, Endpoints, Signal};
use crate::payloads::PayloadArchive;
use crate::settled::{Handled, SettledJournal};
use crate::spans::{self, Spans};
use crate::telemetry;
use hookwire_http::{AttemptReport, Deliverer};

/// The settings the engine reads on every message.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Largest event body.
    pub max_event_bytes: usize,
    /// Above this many subscribers, deliveries are published as tasks.
    pub inline_fanout_max: usize,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Per-webhook caps and circuits.
    pub limits: EndpointLimits,
    /// The most of a dead letter's body that is archived (and, for an over-size event,
    /// dead-lettered at all).
    pub dead_letter_body_max_bytes: usize,
    /// Whether this node reads the attempts stream: a redelivered message then waits,
    /// briefly, for the attempts of the node that had it before.
    pub attempts_replicated: bool,
}

/// Shared by every message handler.
#[derive(Debug)]
pub struct Engine {
    store: Store,
    writer: Writer,
    attempt_log: AttemptLog,
    journal: SettledJournal,
    payloads: PayloadArchive,
    catalog: Catalog,
    deliverer: Deliverer,
    /// What becomes of a task; its retry plan's tiers are what `topology` declares.
    rules: DeliveryRules,
    topology: Topology,
    settings: EngineSettings,
    /// The global attempt slots, shared fairly between organizations.
    permits: FairPermits,
    endpoints: Endpoints,
    /// Cancelled when the shutdown grace is over: attempts still running are handed back.
    grace_over: CancellationToken,
    /// Span export, when configured.
    spans: Spans,
}

/// What an engine is made of.
#[derive(Debug)]
pub struct EngineParts {
    /// Subscriptions (reads).
    pub store: Store,
    /// Durable writes (410 disables, dead-letter archive).
    pub writer: Writer,
    /// The batched attempt log.
    pub attempt_log: AttemptLog,
    /// An event's deliveries settled while the event waits for its others.
    pub journal: SettledJournal,
    /// Keeps each event's body for resending.
    pub payloads: PayloadArchive,
    /// The event catalog.
    pub catalog: Catalog,
    /// HTTP attempts.
    pub deliverer: Deliverer,
    /// The delivery policy, with the retry schedule and every tier.
    pub rules: DeliveryRules,
    /// The namespace's exchange and queue names; its tiers are the plan's.
    pub names: Names,
    /// The replicas each queue is declared with on a cluster (`amqp.replication()`):
    /// every declaration of a queue must carry the arguments it was created with.
    pub replication: Option<u8>,
    /// The rest.
    pub settings: EngineSettings,
    /// Where spans go (`tracing.otlp_endpoint`); none when off.
    pub spans: Spans,
}

impl Engine {
    /// Assembles the engine.
    pub fn new(parts: EngineParts) -> Arc<Self> {
        let EngineParts {
            store,
            writer,
            attempt_log,
            journal,
            payloads,
            catalog,
            deliverer,
            rules,
            names,
            replication,
            settings,
            spans,
        } = parts;
        let mut topology = Topology::of_plan(names.namespace(), &rules.plan);
        topology.replication = replication;
        Arc::new(Self {
            permits: FairPermits::new(settings.concurrency),
            endpoints: Endpoints::new(settings.limits),
            store,
            writer,
            attempt_log,
            journal,
            payloads,
            catalog,
            deliverer,
            rules,
            topology,
            settings,
            grace_over: CancellationToken::new(),
            spans,
        })
    }

    /// The namespace's names and tiers.
    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Every webhook's caps and circuit, as this node sees them.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The batched attempt log.
    pub(crate) fn attempt_log(&self) -> &AttemptLog {
        &self.attempt_log
    }

    /// The archive of event bodies.
    pub(crate) fn payloads(&self) -> &PayloadArchive {
        &self.payloads
    }

    /// Ends the shutdown grace: attempts still running are handed back to the deferral tier.
    pub(crate) fn end_grace(&self) {
        self.grace_over.cancel();
    }

    /// Handles one message of the events queue. `Ok` means every delivery it carries is
    /// succeeded, confirmed as scheduled, or confirmed as dead-lettered: ack it.
    pub async fn handle_event(&self, publisher: &Publisher, message: &Delivery) -> Result<()> {
        let props = &message.properties;
        let h = props.headers().as_ref();
        let raw = RawEvent {
            routing_key: message.routing_key.as_str(),
            org: headers::org(h),
            message_id: props.message_id().as_ref().map(|s| s.as_str()),
            timestamp_secs: *props.timestamp(),
            published_at_ms: headers::unsigned(h, PUBLISHED_AT_HEADER),
            body: &message.data,
        };
        let event = match event::decode_produced(&raw, &self.catalog, self.settings.max_event_bytes)
        {
            Ok(event) => event,
            Err(rejection) => {
                telemetry::event_rejected(rejection.reason.as_str());
                warn!(reason = %rejection.reason, detail = %rejection.detail, routing_key = raw.routing_key, "Event breaks the wire contract; dead-lettered.");
                let (body, dead) = wire::rejected_event(
                    message,
                    rejection.reason,
                    &rejection.detail,
                    self.settings.dead_letter_body_max_bytes,
                );
                return self
                    .dead_letter(publisher, body, dead, rejection.reason)
                    .await;
            }
        };
        // A producer that publishes again when a confirm was lost sends a new message with
        // the same id: deliver it once. A redelivery (this node or another crashed
        // before its ack) may have fanned out only in part, and a replay is deliberate:
        // both go through.
        if !message.redelivered
            && !wire::is_replayed(h)
            && self.store.has_payload(&event.org, &event.id)?
        {
            telemetry::event_repeated();
            debug!(event_id = %event.id, org = %event.org, "Event id seen before; dropped as a producer's repeat.");
            return Ok(());
        }
        telemetry::event_accepted(&event.event_type);
        let producer_trace = wire::trace_of(h);
        let mut span = self
            .spans
            .event(producer_trace.as_ref(), &event, raw.routing_key);
        let trace = spans::tasks_trace(span.as_ref(), producer_trace);
        let subscribers = self.store.subscribers(&event.org, &event.event_type)?;
        debug!(event_id = %event.id, org = %event.org, event_type = %event.event_type, subscribers = subscribers.len(), "Event received.");
        // A redelivered event was first seen when its body was archived: its deliveries keep
        // their age, and their attempts before the redelivery are looked for from then on.
        let archived = match message.redelivered {
            true => self.store.payload(&event.org, &event.id)?,
            false => None,
        };
        let first_seen_ms = archived.map_or_else(now_ms, |kept| kept.received_at_ms);
        // Kept for resending whoever subscribes now: a webhook added later may be sent it.
        // An organization without any webhook has nothing to resend to, and producers must
        // not fill the archive with organizations nobody serves.
        if !subscribers.is_empty() || self.store.has_webhooks(&event.org)? {
            self.payloads.keep(hookwire_store::Payload {
                org: event.org.clone(),
                event_id: event.id.clone(),
                event_type: event.event_type.clone(),
                received_at_ms: first_seen_ms,
                published_at_ms: event.published_at_ms,
                body_bytes: message.data.len(),
                body: message.data.clone(),
            });
        } else {
            telemetry::payload_not_kept_without_webhooks();
        }
        let input = FilterInput::new(&event.event_type, &message.data);
        let passing: Vec<&Subscription> = subscribers
            .iter()
            .map(|sub| &**sub)
            .filter(|sub| self.passes_filter(sub, &input))
            .collect();
        if let Some(span) = &mut span {
            span.deliveries(passing.len());
        }
        let mut tasks: Vec<_> = passing
            .into_iter()
            .map(|sub| {
                let task = Task::new(
                    &event.id,
                    &event.org,
                    &event.event_type,
                    sub.id,
                    first_seen_ms,
                    event.published_at_ms,
                )
                .with_trace(trace.clone());
                (task, sub)
            })
            .collect();
        if message.redelivered {
            self.retain_unsettled(&mut tasks).await;
        }
        if tasks.len() > self.settings.inline_fanout_max {
            // A large fan-out becomes task messages of a chunk of webhooks each, so one
            // event never holds many attempts inline.
            let tasks: Vec<Task> = tasks.into_iter().map(|(task, _)| task).collect();
            return self
                .publish_fanout(publisher, &message.data, &tasks)
                .await
                .inspect_err(|e| spans::failed(&mut span, e));
        }
        // The event's ack waits for all its deliveries: each one settled meanwhile is
        // journaled, so that a redelivery of the event does not make it again.
        let journaled = tasks.len() > 1;
        try_join_all(tasks.into_iter().map(|(mut task, sub)| async move {
            let webhook_id = task.webhook_id();
            self.adopt(&mut task, Handled::Delivery(&webhook_id), message);
            self.deliver(publisher, task, &webhook_id, Some(sub), &message.data, None)
                .await?;
            if journaled {
                self.journal.record(&webhook_id);
            }
            Ok::<_, crate::Error>(())
        }))
        .await
        .inspect_err(|e| spans::failed(&mut span, e))?;
        Ok(())
    }

    /// Archives one message of the dead queue, durably, before it is acked.
    pub async fn handle_dead(&self, message: &Delivery) -> Result<()> {
        let record = crate::dead::archive_record(message, self.settings.dead_letter_body_max_bytes);
        let (reason, org) = (record.reason.clone(), record.org.clone());
        self.writer
            .commit(Change::ArchiveDeadLetter(record))
            .await?;
        info!(%reason, org = org.as_deref().unwrap_or("-"), "Dead letter archived.");
        Ok(())
    }

    /// Makes one attempt to `webhook` (`None`: it was deleted), unless the rules settle
    /// the task without one, and makes what becomes of it durable. `webhook_id` is the
    /// task's, which its caller has already derived.
    async fn deliver(
        &self,
        publisher: &Publisher,
        task: Task,
        webhook_id: &str,
        webhook: Option<&Subscription>,
        body: &[u8],
        filter_input: Option<&FilterInput<'_>>,
    ) -> Result<()> {
        let age = Duration::from_millis(now_ms().saturating_sub(task.first_seen_ms));
        let sub = match self.rules.before_attempt(webhook, age) {
            BeforeAttempt::Attempt(sub) => sub,
            BeforeAttempt::Instead(disposition) => {
                return self.settle(publisher, &task, body, disposition).await;
            }
        };
        if let Some(input) = filter_input
            && !self.passes_filter(sub, input)
        {
            return Ok(());
        }
        // A webhook without a transform is sent the event's body as it is, borrowed.
        let sent = match self.sent_body(sub, &task, body, filter_input) {
            Ok(sent) => sent,
            Err(detail) => {
                return self
                    .dead_letter_task(publisher, &task, body, DeadReason::TransformError, &detail)
                    .await;
            }
        };
        let now = now_ms();
        if let Some(late) = telemetry::tier_overdue(task.due_ms, now) {
            telemetry::tier_overdue_seen(late);
            warn!(%webhook_id, overdue_ms = late.as_millis() as u64, "Delivery came back from its retry tier late: the broker did not expire it on time, or the deliveries queue is that far behind.");
        }
        let Some(admission) = self.admit(publisher, &task, sub, body, now).await? else {
            return Ok(());
        };
        let report = tokio::select! {
            report = self.attempt(sub, &task, webhook_id, &sent.bytes) => report,
            () = self.grace_over.cancelled() => {
                let disposition = self.rules.handed_back();
                return self.settle(publisher, &task, body, disposition).await;
            }
        };
        // The circuit counts what says the receiver is unwell; a 4xx or 410 is an answer.
        let load = load_signal(&report);
        match report.outcome {
            Outcome::Delivered => admission.finish_with(true, load, Instant::now()),
            Outcome::Retry { .. } => admission.finish_with(false, load, Instant::now()),
            Outcome::Permanent | Outcome::Gone => drop(admission),
        }
        let attempt = task.attempts + 1;
        // Recorded once what the attempt decided is durable: a redelivery that finds the
        // record takes the delivery as settled (engine/redelivery.rs).
        let record = attempt_record(
            &task,
            webhook_id,
            attempt,
            &report,
            sent.transformed.clone(),
        );
        let next = Task {
            attempts: attempt,
            deferred_since_ms: None,
            ..task
        };
        let now = now_ms();
        let decision =
            self.rules
                .after_attempt(report.outcome, attempt, || report.describe(), sub, now);
        self.record_health(sub, decision.health, now).await;
        if decision.disposition == Disposition::Delivered {
            debug!(%webhook_id, status = report.status, latency_ms = report.latency.as_millis() as u64, "Delivered.");
            self.settle(publisher, &next, body, decision.disposition)
                .await?;
        } else {
            // Only failures get a span: a span per delivery is measurable CPU on the hot
            // path, and the delivered path logs nothing at info.
            let span = info_span!("delivery", %webhook_id, subscription_id = %sub.id, attempt);
            self.settle_failure(publisher, &next, sub, body, decision, &report, &sent)
                .instrument(span)
                .await?;
        }
        self.attempt_log.record(record);
        Ok(())
    }

    /// Applies the decision after an attempt that did not deliver: disabling, then the
    /// task's disposition.
    #[allow(clippy::too_many_arguments)]
    async fn settle_failure(
        &self,
        publisher: &Publisher,
        next: &Task,
        sub: &Subscription,
        body: &[u8],
        decision: Decision,
        report: &AttemptReport,
        sent: &expressions::Sent<'_>,
    ) -> Result<()> {
        let Decision {
            disable,
            disposition,
            ..
        } = decision;
        if let Some(disable) = disable {
            let reason = disable.reason();
            match disable {
                Disable::Gone => warn!("Receiver answered 410 Gone; webhook disabled."),
                Disable::Failing(_) => warn!(%reason, "Webhook disabled: it keeps failing."),
            }
            self.disable(sub, &reason).await?;
            telemetry::webhook_disabled();
            self.emit_webhook_disabled(publisher, next, &reason).await?;
        }
        if let Disposition::Park { delay, .. } = disposition {
            warn!(delay_ms = delay.as_millis() as u64, error = %report.describe(), "Delivery failed; retry scheduled.");
        }
        self.settle_sent(
            publisher,
            next,
            body,
            disposition,
            sent.transformed.as_ref(),
        )
        .await
    }

    /// Does what the rules decided for a task: counts it, parks it or dead-letters it.
    async fn settle(
        &self,
        publisher: &Publisher,
        task: &Task,
        body: &[u8],
        disposition: Disposition,
    ) -> Result<()> {
        self.settle_sent(publisher, task, body, disposition, None)
            .await
    }

    /// [`Engine::settle`] after an attempt that sent `transformed` in place of `body`: a
    /// dead letter says so.
    async fn settle_sent(
        &self,
        publisher: &Publisher,
        task: &Task,
        body: &[u8],
        disposition: Disposition,
        transformed: Option<&Transformed>,
    ) -> Result<()> {
        match disposition {
            Disposition::Delivered => {
                telemetry::delivery("delivered");
                if let Some(at) = task.published_at_ms {
                    telemetry::end_to_end_lag(Duration::from_millis(now_ms().saturating_sub(at)));
                }
                Ok(())
            }
            Disposition::Dropped => {
                info!(subscription_id = %task.subscription_id, event_id = %task.event_id, "Webhook was deleted; its pending delivery is dropped.");
                telemetry::delivery("dropped_webhook_deleted");
                Ok(())
            }
            Disposition::Park { delay, cause } => match cause {
                ParkCause::Retry => {
                    self.park(publisher, task, body, delay).await?;
                    telemetry::delivery("retry_scheduled");
                    telemetry::retry_scheduled(&tier_name(delay));
                    Ok(())
                }
                ParkCause::Deferred(deferral) => {
                    debug!(webhook_id = %task.webhook_id(), ?deferral, delay_ms = delay.as_millis() as u64, "Delivery deferred; no attempt used.");
                    telemetry::delivery("deferred");
                    self.park(publisher, task, body, delay).await
                }
                ParkCause::HandedBack => {
                    info!(webhook_id = %task.webhook_id(), subscription_id = %task.subscription_id, "Shutdown grace is over; delivery handed back to the deferral tier.");
                    self.park(publisher, task, body, delay).await
                }
            },
            Disposition::DeadLetter { reason, detail } => {
                match reason {
                    DeadReason::Exhausted => warn!(%detail, "Delivery exhausted; dead-lettered."),
                    DeadReason::PermanentStatus => {
                        warn!(%detail, "Delivery failed permanently; dead-lettered.");
                    }
                    _ => {}
                }
                self.dead_letter_task_sent(publisher, task, body, reason, &detail, transformed)
                    .await
            }
        }
    }

    async fn attempt(
        &self,
        sub: &Subscription,
        task: &Task,
        webhook_id: &str,
        body: &[u8],
    ) -> AttemptReport {
        let _permit = self.permits.acquire(&sub.org).await;
        telemetry::in_flight(1.0);
        // With a span, the request names it as the receiver's parent; without, it passes
        // the producer's context on unchanged.
        let span = self.spans.attempt(task);
        let on_request = span.as_ref().map(|s| &s.on_request).or(task.trace.as_ref());
        let report = self
            .deliverer
            .attempt_in_trace(sub, webhook_id, body, on_request)
            .await;
        if let Some(span) = span {
            span.finish(task, webhook_id, &report);
        }
        telemetry::in_flight(-1.0);
        telemetry::attempt_finished(outcome_name(report.outcome), report.latency);
        report
    }
}

/// What an attempt says about its receiver's load: a 2xx's latency; a timeout, 429 or
/// 503 (with its `Retry-After`) as overload; anything else nothing.
fn load_signal(report: &AttemptReport) -> Signal {
    match (report.outcome, report.status, report.failure) {
        (Outcome::Delivered, ..) => Signal::Answered(report.latency),
        (Outcome::Retry { after }, Some(429 | 503), _) => Signal::Overloaded { retry_after: after },
        (_, _, Some(hookwire_core::AttemptFailure::Timeout)) => {
            Signal::Overloaded { retry_after: None }
        }
        _ => Signal::None,
    }
}
