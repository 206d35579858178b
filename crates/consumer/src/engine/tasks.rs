//! Messages of the deliveries queue: one more attempt of one task (a retry, a deferral,
//! a resend or replay), or the first attempts of a large fan-out's chunk.

use hookwire_amqp::Publisher;
use hookwire_amqp::wire::{self, Task};
use hookwire_core::event;
use hookwire_core::{DeadReason, FilterInput};
use lapin::message::Delivery;
use tracing::{info, warn};

use super::{Engine, redelivery};
use crate::settled::Handled;
use crate::{Result, telemetry};

impl Engine {
    /// Handles one message of the deliveries queue: one more attempt of one task, or the
    /// first attempts of a large fan-out's chunk (engine/fanout.rs).
    pub async fn handle_task(&self, publisher: &Publisher, message: &Delivery) -> Result<()> {
        let props = &message.properties;
        let mut tasks = match Task::all_from_headers(props.headers().as_ref()) {
            Ok(tasks) => tasks,
            Err(detail) => {
                warn!(%detail, "Delivery task is unreadable; dead-lettered.");
                let dead = wire::dead_letter_properties(props, DeadReason::MissingField, &detail);
                return self
                    .dead_letter(publisher, &message.data, dead, DeadReason::MissingField)
                    .await;
            }
        };
        if let Err(rejection) = event::check_task_body(
            &message.data,
            &tasks[0].event_type,
            self.settings.max_event_bytes,
        ) {
            warn!(reason = %rejection.reason, detail = %rejection.detail, subscription_id = %tasks[0].subscription_id, tasks = tasks.len(), "Delivery task breaks the wire contract; dead-lettered.");
            let (body, dead) = wire::bounded_dead_letter(
                &message.data,
                wire::dead_letter_properties(props, rejection.reason, &rejection.detail),
                self.settings.dead_letter_body_max_bytes,
            );
            return self
                .dead_letter(publisher, body, dead, rejection.reason)
                .await;
        }
        // The filter is checked again: it may have changed since the event fanned out.
        let event_type = tasks[0].event_type.clone();
        let input = FilterInput::new(&event_type, &message.data);
        if tasks.len() > 1 {
            return self.deliver_chunk(publisher, message, tasks, &input).await;
        }
        let mut task = tasks.swap_remove(0);
        if self.left_behind(&task) || (message.redelivered && self.settled_before(&task).await) {
            return Ok(());
        }
        let webhook_id = task.webhook_id();
        let copy = redelivery::task_copy(&task, &webhook_id);
        self.adopt(&mut task, Handled::Task(copy), message);
        self.deliver_task(publisher, task, &webhook_id, &message.data, &input)
            .await?;
        // Before the ack: a SIGKILL between the two finds it on the redelivery.
        self.journal.record_task(copy);
        Ok(())
    }

    /// Makes the attempt of a task of the work queue, unless its webhook no longer
    /// subscribes to its event type.
    pub(super) async fn deliver_task(
        &self,
        publisher: &Publisher,
        task: Task,
        webhook_id: &str,
        body: &[u8],
        input: &FilterInput<'_>,
    ) -> Result<()> {
        let sub = self
            .store
            .subscriber(&task.org, &task.event_type, &task.subscription_id)?;
        if sub
            .as_ref()
            .is_some_and(|s| !s.listens_to(&task.event_type))
        {
            info!(subscription_id = %task.subscription_id, event_type = %task.event_type, "Webhook no longer subscribes to the task's event type; its delivery is dropped.");
            telemetry::delivery("dropped_not_subscribed");
            return Ok(());
        }
        // Boxed: inlined, an attempt's future (kilobytes) would size every message's task,
        // events' included, whose attempts `try_join_all` already keeps on the heap.
        Box::pin(self.deliver(
            publisher,
            task,
            webhook_id,
            sub.as_deref(),
            body,
            Some(input),
        ))
        .await
    }
}
