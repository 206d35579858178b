//! What happens to one message: an event fans out to its subscribers, a task makes one
//! more attempt, and every outcome is made durable before the message may be acked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, try_join_all};
use hookwire_amqp::wire::{self, Task};
use hookwire_amqp::{
    Names, Publisher, Topology, headers, topology::DEAD_KEY, topology::DELIVER_KEY,
};
use hookwire_core::disposition::{
    BeforeAttempt, Decision, Disable, Disposition, HealthRecord, ParkCause,
    emits_operational_events,
};
use hookwire_core::event::{self, PUBLISHED_AT_HEADER, RawEvent};
use hookwire_core::retry::{jittered, tier_name};
use hookwire_core::{
    AttemptFailure, Catalog, DeadReason, DeliveryRules, Outcome, Subscription, now_ms,
};
use hookwire_store::{AttemptRecord, Change, MAX_EXCERPT_BYTES, Store, Writer};
use lapin::BasicProperties;
use lapin::message::Delivery;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Result;
use crate::attempt_log::AttemptLog;
use crate::endpoints::{EndpointLimits, Endpoints};
use crate::telemetry;
use hookwire_http::{AttemptReport, Deliverer};

/// The operational event sent when hookwire disables a webhook.
const WEBHOOK_DISABLED: &str = "webhook_disabled";
/// The operational event sent when a delivery is dead-lettered.
const DELIVERY_DEAD_LETTERED: &str = "delivery_dead_lettered";

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
}

/// Shared by every message handler.
#[derive(Debug)]
pub struct Engine {
    store: Store,
    writer: Writer,
    attempt_log: AttemptLog,
    catalog: Catalog,
    deliverer: Deliverer,
    /// What becomes of a task; its retry plan's tiers are what `topology` declares.
    rules: DeliveryRules,
    topology: Topology,
    settings: EngineSettings,
    permits: Semaphore,
    endpoints: Endpoints,
    /// Cancelled when the shutdown grace is over: attempts still running are handed back.
    grace_over: CancellationToken,
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
    /// The event catalog.
    pub catalog: Catalog,
    /// HTTP attempts.
    pub deliverer: Deliverer,
    /// The delivery policy, with the retry schedule and every tier.
    pub rules: DeliveryRules,
    /// The namespace's exchange and queue names; its tiers are the plan's.
    pub names: Names,
    /// The rest.
    pub settings: EngineSettings,
}

impl Engine {
    /// Assembles the engine.
    pub fn new(parts: EngineParts) -> Arc<Self> {
        let EngineParts {
            store,
            writer,
            attempt_log,
            catalog,
            deliverer,
            rules,
            names,
            settings,
        } = parts;
        let topology = Topology::of_plan(names.namespace(), &rules.plan);
        Arc::new(Self {
            permits: Semaphore::new(settings.concurrency),
            endpoints: Endpoints::new(settings.limits),
            store,
            writer,
            attempt_log,
            catalog,
            deliverer,
            rules,
            topology,
            settings,
            grace_over: CancellationToken::new(),
        })
    }

    /// The namespace's names and tiers.
    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The batched attempt log.
    pub(crate) fn attempt_log(&self) -> &AttemptLog {
        &self.attempt_log
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
        let event = match event::decode(&raw, &self.catalog, self.settings.max_event_bytes) {
            Ok(event) => event,
            Err(rejection) => {
                telemetry::event_consumed(None, rejection.reason.as_str());
                warn!(reason = %rejection.reason, detail = %rejection.detail, routing_key = raw.routing_key, "Event breaks the wire contract; dead-lettered.");
                let dead =
                    wire::rejected_event_properties(message, rejection.reason, &rejection.detail);
                return self
                    .dead_letter(publisher, &message.data, dead, rejection.reason)
                    .await;
            }
        };
        telemetry::event_consumed(Some(&event.event_type), "accepted");
        let subscribers = self.store.subscribers(&event.org, &event.event_type)?;
        debug!(event_id = %event.id, org = %event.org, event_type = %event.event_type, subscribers = subscribers.len(), "Event received.");
        let first_seen_ms = now_ms();
        let tasks = subscribers.iter().map(|sub| {
            let task = Task {
                event_id: event.id.clone(),
                org: event.org.clone(),
                event_type: event.event_type.clone(),
                subscription_id: sub.id,
                attempts: 0,
                first_seen_ms,
                published_at_ms: event.published_at_ms,
            };
            (task, sub)
        });
        if tasks.len() > self.settings.inline_fanout_max {
            // A large fan-out becomes tasks, so one event never holds many attempts inline.
            let work = self.topology.names.work_exchange();
            try_join_all(tasks.map(|(task, _)| {
                publisher.publish(&work, DELIVER_KEY, &message.data, task.properties())
            }))
            .await?;
            return Ok(());
        }
        try_join_all(
            tasks.map(|(task, sub)| self.deliver(publisher, task, Some(sub), &message.data)),
        )
        .await?;
        Ok(())
    }

    /// Handles one message of the deliveries queue: one more attempt of one task.
    pub async fn handle_task(&self, publisher: &Publisher, message: &Delivery) -> Result<()> {
        let props = &message.properties;
        let task = match Task::from_headers(props.headers().as_ref()) {
            Ok(task) => task,
            Err(detail) => {
                warn!(%detail, "Delivery task is unreadable; dead-lettered.");
                let dead = wire::dead_letter_properties(props, DeadReason::MissingField, &detail);
                return self
                    .dead_letter(publisher, &message.data, dead, DeadReason::MissingField)
                    .await;
            }
        };
        let sub = self.store.get(&task.org, &task.subscription_id)?;
        // Boxed: inlined, an attempt's future (kilobytes) would size every message's task,
        // events' included, whose attempts `try_join_all` already keeps on the heap.
        Box::pin(self.deliver(publisher, task, sub.as_ref(), &message.data)).await
    }

    /// Archives one message of the dead queue, durably, before it is acked.
    pub async fn handle_dead(&self, message: &Delivery) -> Result<()> {
        let record = crate::dead::archive_record(message);
        info!(reason = %record.reason, org = record.org.as_deref().unwrap_or("-"), "Dead letter archived.");
        self.writer
            .commit(Change::ArchiveDeadLetter(record))
            .await?;
        Ok(())
    }

    /// Makes one attempt to `webhook` (`None`: it was deleted), unless the rules settle
    /// the task without one, and makes what becomes of it durable.
    async fn deliver(
        &self,
        publisher: &Publisher,
        task: Task,
        webhook: Option<&Subscription>,
        body: &[u8],
    ) -> Result<()> {
        let age = Duration::from_millis(now_ms().saturating_sub(task.first_seen_ms));
        let sub = match self.rules.before_attempt(webhook, age) {
            BeforeAttempt::Attempt(sub) => sub,
            BeforeAttempt::Instead(disposition) => {
                return self.settle(publisher, &task, body, disposition).await;
            }
        };
        let admission = match self.endpoints.admit(sub, Instant::now()) {
            Ok(admission) => admission,
            Err(deferral) => {
                let disposition = self.rules.deferred(deferral);
                return self.settle(publisher, &task, body, disposition).await;
            }
        };
        let webhook_id = task.webhook_id();
        let report = tokio::select! {
            report = self.attempt(sub, &webhook_id, body) => report,
            () = self.grace_over.cancelled() => {
                let disposition = self.rules.handed_back();
                return self.settle(publisher, &task, body, disposition).await;
            }
        };
        // The circuit counts what says the receiver is unwell; a 4xx or 410 is an answer.
        match report.outcome {
            Outcome::Delivered => admission.finish(true, Instant::now()),
            Outcome::Retry { .. } => admission.finish(false, Instant::now()),
            Outcome::Permanent | Outcome::Gone => drop(admission),
        }
        let attempt = task.attempts + 1;
        self.attempt_log
            .record(attempt_record(&task, &webhook_id, attempt, &report));
        let next = Task {
            attempts: attempt,
            ..task
        };
        let now = now_ms();
        let decision =
            self.rules
                .after_attempt(report.outcome, attempt, || report.describe(), sub, now);
        self.record_health(sub, decision.health, now).await;
        if decision.disposition == Disposition::Delivered {
            debug!(%webhook_id, status = report.status, latency_ms = report.latency.as_millis() as u64, "Delivered.");
            return self
                .settle(publisher, &next, body, decision.disposition)
                .await;
        }
        // Only failures get a span: on every delivery it cost ~4 % of serve's CPU, and the
        // delivered path logs nothing at info.
        let span = info_span!("delivery", %webhook_id, subscription_id = %sub.id, attempt);
        self.settle_failure(publisher, &next, sub, body, decision, &report)
            .instrument(span)
            .await
    }

    /// Applies the decision after an attempt that did not deliver: disabling, then the
    /// task's disposition.
    async fn settle_failure(
        &self,
        publisher: &Publisher,
        next: &Task,
        sub: &Subscription,
        body: &[u8],
        decision: Decision,
        report: &AttemptReport,
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
        self.settle(publisher, next, body, disposition).await
    }

    /// Does what the rules decided for a task: counts it, parks it or dead-letters it.
    async fn settle(
        &self,
        publisher: &Publisher,
        task: &Task,
        body: &[u8],
        disposition: Disposition,
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
                self.dead_letter_task(publisher, task, body, reason, &detail)
                    .await
            }
        }
    }

    async fn attempt(&self, sub: &Subscription, webhook_id: &str, body: &[u8]) -> AttemptReport {
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the permit semaphore is never closed");
        telemetry::in_flight(1.0);
        let report = self.deliverer.attempt(sub, webhook_id, body).await;
        telemetry::in_flight(-1.0);
        telemetry::attempt_finished(outcome_name(report.outcome), report.latency);
        report
    }

    /// Parks a task in the tier queue for `delay`; its TTL brings it back to the work queue.
    async fn park(
        &self,
        publisher: &Publisher,
        task: &Task,
        body: &[u8],
        delay: Duration,
    ) -> Result<()> {
        let expiration = jittered(delay, rand::random::<f64>());
        let props = task.parked_properties(expiration);
        publish(
            publisher,
            "",
            &self.topology.names.retry_queue(delay),
            body,
            props,
        )
        .await?;
        Ok(())
    }

    async fn dead_letter_task(
        &self,
        publisher: &Publisher,
        task: &Task,
        body: &[u8],
        reason: DeadReason,
        detail: &str,
    ) -> Result<()> {
        let props = task.dead_letter_properties(reason, detail);
        self.dead_letter(publisher, body, props, reason).await?;
        let fields = [
            ("webhook_id", task.subscription_id.to_string()),
            ("event_id", task.event_id.clone()),
            ("reason", reason.as_str().to_owned()),
        ];
        self.emit(publisher, task, DELIVERY_DEAD_LETTERED, &fields)
            .await
    }

    async fn dead_letter(
        &self,
        publisher: &Publisher,
        body: &[u8],
        props: BasicProperties,
        reason: DeadReason,
    ) -> Result<()> {
        telemetry::dead_lettered(reason);
        publish(
            publisher,
            &self.topology.names.dead_letter_exchange(),
            DEAD_KEY,
            body,
            props,
        )
        .await?;
        Ok(())
    }

    /// Writes an attempt to its webhook's health, when the rules say so. A failed write
    /// is logged, not fatal: health only decides when to disable.
    async fn record_health(&self, sub: &Subscription, record: Option<HealthRecord>, at_ms: u64) {
        let Some(record) = record else { return };
        let store = self.store.clone();
        let change = Change::RecordHealth {
            org: sub.org.clone(),
            id: sub.id,
            delivered: record == HealthRecord::Delivered,
            at_ms,
        };
        match tokio::task::spawn_blocking(move || store.apply(change)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(subscription_id = %sub.id, error = %e, "Cannot record the webhook's health.")
            }
            Err(e) => warn!(subscription_id = %sub.id, error = %e, "Health write panicked."),
        }
    }

    /// Publishes an operational event to the org's own subscribers of it — unless the
    /// delivery at hand is itself an operational event, so failures never cascade.
    async fn emit(
        &self,
        publisher: &Publisher,
        cause: &Task,
        event_type: &str,
        fields: &[(&str, String)],
    ) -> Result<()> {
        if !emits_operational_events(self.catalog.get(&cause.event_type)) {
            return Ok(());
        }
        let event = wire::operational_event(cause, event_type, fields);
        let (body, props) = match wire::encode_event(&self.catalog, &event) {
            Ok(encoded) => encoded,
            // A catalog without this operational type: the consumer would dead-letter it.
            Err(e) => {
                warn!(event_type, error = %e, "Operational event not sent.");
                return Ok(());
            }
        };
        publish(
            publisher,
            &self.topology.names.events_exchange(),
            event_type,
            &body,
            props,
        )
        .await?;
        Ok(())
    }

    async fn emit_webhook_disabled(
        &self,
        publisher: &Publisher,
        cause: &Task,
        reason: &str,
    ) -> Result<()> {
        let fields = [
            ("webhook_id", cause.subscription_id.to_string()),
            ("reason", reason.to_owned()),
        ];
        self.emit(publisher, cause, WEBHOOK_DISABLED, &fields).await
    }

    /// Disables a webhook durably before the delivery that caused it is acked.
    async fn disable(&self, sub: &Subscription, reason: &str) -> Result<()> {
        if let Some(mut current) = self.store.get(&sub.org, &sub.id)? {
            current.enabled = false;
            current.disabled_reason = Some(reason.to_owned());
            current.updated_at_ms = now_ms();
            self.writer.commit(Change::Upsert(current)).await?;
        }
        Ok(())
    }
}

/// Publishes with a confirm, boxed: publishing is off the hot path, and its future inlined
/// would make every delivery's task kilobytes larger, allocated and copied per message.
fn publish<'a>(
    publisher: &'a Publisher,
    exchange: &'a str,
    routing_key: &'a str,
    body: &'a [u8],
    properties: BasicProperties,
) -> BoxFuture<'a, hookwire_amqp::Result<()>> {
    Box::pin(publisher.publish(exchange, routing_key, body, properties))
}

/// The attempt log's view of one attempt.
fn attempt_record(
    task: &Task,
    message_id: &str,
    attempt: u32,
    report: &AttemptReport,
) -> AttemptRecord {
    let mut excerpt = report.response_excerpt.clone();
    if excerpt.len() > MAX_EXCERPT_BYTES {
        let mut end = MAX_EXCERPT_BYTES;
        while !excerpt.is_char_boundary(end) {
            end -= 1;
        }
        excerpt.truncate(end);
    }
    AttemptRecord {
        subscription_id: task.subscription_id,
        event_id: task.event_id.clone(),
        message_id: message_id.to_owned(),
        attempt,
        at_ms: now_ms().saturating_sub(u64::try_from(report.latency.as_millis()).unwrap_or(0)),
        outcome: outcome_name(report.outcome).to_owned(),
        status: report.status,
        latency_ms: u64::try_from(report.latency.as_millis()).unwrap_or(u64::MAX),
        error_kind: report.failure.map(|f| {
            match f {
                AttemptFailure::Timeout => "timeout",
                AttemptFailure::Connect => "connect",
                AttemptFailure::TargetRefused => "target_refused",
                AttemptFailure::Other => "other",
            }
            .to_owned()
        }),
        error: report.error.clone(),
        response_excerpt: excerpt,
    }
}

/// The outcome's name in the attempt log and in metric labels.
fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Permanent => "permanent",
        Outcome::Gone => "gone",
    }
}
