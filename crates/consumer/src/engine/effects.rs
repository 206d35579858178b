//! The engine's effects: what it writes to the broker and the store once a disposition is
//! decided. Every publish here waits for its confirm.

use std::time::Duration;

use futures_util::future::BoxFuture;
use hookwire_amqp::wire::{self, Task};
use hookwire_amqp::{
    Publisher,
    topology::{DEAD_KEY, DELIVER_KEY},
};
use hookwire_core::disposition::{HealthRecord, emits_operational_events};
use hookwire_core::retry::jittered;
use hookwire_core::{DeadReason, Subscription, Transformed, now_ms};
use hookwire_store::{Change, Error as StoreError};
use lapin::BasicProperties;
use tracing::warn;

use super::Engine;
use crate::{Result, telemetry};

/// The operational event sent when hookwire disables a webhook.
const WEBHOOK_DISABLED: &str = "webhook_disabled";
/// The operational event sent when a delivery is dead-lettered.
const DELIVERY_DEAD_LETTERED: &str = "delivery_dead_lettered";

impl Engine {
    /// Parks a task in the tier queue for `delay`; its TTL brings it back to the work queue.
    pub(super) async fn park(
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

    pub(super) async fn dead_letter_task(
        &self,
        publisher: &Publisher,
        task: &Task,
        body: &[u8],
        reason: DeadReason,
        detail: &str,
    ) -> Result<()> {
        self.dead_letter_task_sent(publisher, task, body, reason, detail, None)
            .await
    }

    /// [`Engine::dead_letter_task`] of a task whose last attempt sent `transformed`.
    pub(super) async fn dead_letter_task_sent(
        &self,
        publisher: &Publisher,
        task: &Task,
        body: &[u8],
        reason: DeadReason,
        detail: &str,
        transformed: Option<&Transformed>,
    ) -> Result<()> {
        let props = task.dead_letter_properties_sent(reason, detail, transformed);
        self.dead_letter(publisher, body, props, reason).await?;
        let fields = [
            ("webhook_id", task.subscription_id.to_string()),
            ("event_id", task.event_id.clone()),
            ("reason", reason.as_str().to_owned()),
        ];
        self.emit(publisher, task, DELIVERY_DEAD_LETTERED, &fields)
            .await
    }

    pub(super) async fn dead_letter(
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
    pub(super) async fn record_health(
        &self,
        sub: &Subscription,
        record: Option<HealthRecord>,
        at_ms: u64,
    ) {
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

    /// Sends an operational event to the org's own subscribers of it — unless the
    /// delivery at hand is itself an operational event, so failures never cascade. It goes
    /// as one task per subscriber to the work exchange, which producers cannot write to:
    /// the events exchange refuses operational types, so none can be forged there.
    pub(super) async fn emit(
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
        let body = match wire::encode_operational(&self.catalog, &event) {
            Ok(body) => body,
            // A catalog without this operational type: nobody can subscribe to it.
            Err(e) => {
                warn!(event_type, error = %e, "Operational event not sent.");
                return Ok(());
            }
        };
        let subscribers = self.store.subscribers(&event.org, event_type)?;
        let now = now_ms();
        let work = self.topology.names.work_exchange();
        for sub in subscribers.iter() {
            let task = Task::new(
                &event.id,
                &event.org,
                &event.event_type,
                sub.id,
                now,
                Some(now),
            )
            // Announced in the trace of the delivery that caused it.
            .with_trace(cause.trace.clone());
            publish(publisher, &work, DELIVER_KEY, &body, task.properties()).await?;
        }
        Ok(())
    }

    pub(super) async fn emit_webhook_disabled(
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

    /// Disables a webhook durably before the delivery that caused it is acked: a
    /// compare-and-swap on a fresh read, retried when an API write lands in between, so
    /// that it never undoes one (a deleted webhook stays deleted).
    pub(super) async fn disable(&self, sub: &Subscription, reason: &str) -> Result<()> {
        loop {
            let Some(mut current) = self.store.get(&sub.org, &sub.id)? else {
                return Ok(());
            };
            if !current.enabled {
                // Disabled meanwhile, by its owner or another attempt: keep their reason.
                return Ok(());
            }
            let expected_version = current.version;
            current.enabled = false;
            current.disabled_reason = Some(reason.to_owned());
            current.updated_at_ms = now_ms();
            let change = Change::Replace {
                sub: current,
                expected_version,
            };
            match self.writer.commit(change).await {
                Ok(()) | Err(StoreError::NotFound(_)) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
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
