//! A large fan-out: one task per subscriber, published to the work exchange a chunk at a
//! time, each chunk confirmed before the next, so that at most a chunk's copies of the
//! body are in flight however many subscribers there are.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::try_join_all;
use hookwire_amqp::Publisher;
use hookwire_amqp::topology::DELIVER_KEY;
use hookwire_amqp::wire::Task;

use super::Engine;
use crate::{Result, telemetry};

/// Tasks of one fan-out published at once.
pub(crate) const FANOUT_PUBLISH_CHUNK: usize = 256;

impl Engine {
    /// Publishes `tasks`, each with `body`, a chunk at a time. `Ok` once every one is
    /// confirmed.
    pub(super) async fn publish_fanout(
        &self,
        publisher: &Publisher,
        body: &[u8],
        tasks: impl Iterator<Item = Task>,
    ) -> Result<()> {
        let work = self.topology.names.work_exchange();
        let in_flight = InFlight::default();
        let mut tasks = tasks;
        loop {
            let chunk: Vec<Task> = tasks.by_ref().take(FANOUT_PUBLISH_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            try_join_all(chunk.iter().map(|task| {
                in_flight.counted(publisher.publish(&work, DELIVER_KEY, body, task.properties()))
            }))
            .await?;
        }
        telemetry::fanout_in_flight(in_flight.max.load(Ordering::Relaxed));
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
