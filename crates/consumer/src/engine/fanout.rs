//! A large fan-out: the event's deliveries travel the work queue as chunk messages, each
//! naming up to `delivery.inline_fanout_max` webhooks, whose first attempts are made
//! together as an event's inline attempts are. One message per chunk instead of one per
//! webhook keeps the broker's cost per delivery near an inline delivery's. The messages
//! are published a window at a time, each window confirmed before the next, so that at
//! most a window's copies of the body are in flight however many webhooks there are.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::try_join_all;
use hookwire_amqp::Publisher;
use hookwire_amqp::topology::DELIVER_KEY;
use hookwire_amqp::wire::{FANOUT_CHUNK_MAX, Task};
use hookwire_core::FilterInput;
use lapin::message::Delivery;

use super::Engine;
use crate::settled::Handled;
use crate::{Result, telemetry};

/// Messages of one fan-out published at once.
pub(crate) const FANOUT_PUBLISH_WINDOW: usize = 256;

impl Engine {
    /// Publishes `tasks` (first attempts of one event, with `body`) as chunk messages of
    /// even sizes (17 webhooks make chunks of 9 and 8, not 16 and 1). `Ok` once every
    /// message is confirmed.
    pub(super) async fn publish_fanout(
        &self,
        publisher: &Publisher,
        body: &[u8],
        tasks: &[Task],
    ) -> Result<()> {
        let work = self.topology.names.work_exchange();
        let per_message = self.settings.inline_fanout_max.clamp(1, FANOUT_CHUNK_MAX);
        let messages = tasks.len().div_ceil(per_message).max(1);
        let chunk = tasks.len().div_ceil(messages).max(1);
        let chunks: Vec<&[Task]> = tasks.chunks(chunk).collect();
        let in_flight = InFlight::default();
        for window in chunks.chunks(FANOUT_PUBLISH_WINDOW) {
            try_join_all(window.iter().map(|chunk| {
                let ids: Vec<_> = chunk.iter().map(|task| task.subscription_id).collect();
                let properties = chunk[0].chunk_properties(&ids);
                in_flight.counted(publisher.publish(&work, DELIVER_KEY, body, properties))
            }))
            .await?;
        }
        telemetry::fanout_in_flight(in_flight.max.load(Ordering::Relaxed));
        Ok(())
    }

    /// One chunk message: the first attempt to each of its webhooks, concurrently. Each
    /// one settled is journaled, so that a redelivery of the message (a crash before its
    /// ack) makes only the others, as for an event's inline deliveries.
    pub(super) async fn deliver_chunk(
        &self,
        publisher: &Publisher,
        message: &Delivery,
        tasks: Vec<Task>,
        input: &FilterInput<'_>,
    ) -> Result<()> {
        let mut tasks: Vec<(Task, ())> = tasks.into_iter().map(|task| (task, ())).collect();
        if message.redelivered {
            self.retain_unsettled(&mut tasks).await;
        }
        try_join_all(tasks.into_iter().map(|(mut task, ())| async move {
            let webhook_id = task.webhook_id();
            self.adopt(&mut task, Handled::Delivery(&webhook_id), message);
            self.deliver_task(publisher, task, &webhook_id, &message.data, input)
                .await?;
            self.journal.record(&webhook_id);
            Ok::<_, crate::Error>(())
        }))
        .await?;
        Ok(())
    }
}

/// Publishes of one fan-out awaiting their confirms: now, and the most at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    async fn counted<T>(&self, publish: impl Future<Output = T>) -> T {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(now, Ordering::Relaxed);
        let result = publish.await;
        self.now.fetch_sub(1, Ordering::Relaxed);
        result
    }
}
