//! The broker side of the bench: publishing events by the wire contract with a window of
//! unconfirmed publishes, the baseline consumer, and queue polls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use hookwire_amqp::lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
};
use hookwire_amqp::lapin::types::FieldTable;
use hookwire_amqp::lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use hookwire_amqp::{Names, OutgoingEvent, Producer, Publisher};
use hookwire_core::Catalog;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::tally::{Tally, parse_run_and_seq};

/// The event type every bench event has.
pub const EVENT_TYPE: &str = "report_run_completed";

/// Event `seq` of `org` in the tally `run`, shaped like Mode's payloads (about 100 bytes
/// of body; the run is the report's id). Its id is unique, as a producer's are: hookwire
/// drops an event whose id it has kept already as a producer's repeat, and the
/// scenarios' rounds publish the same `seq`s again.
pub fn event(org: &str, run: u64, seq: usize) -> OutgoingEvent {
    let mut data = serde_json::Map::new();
    data.insert(
        "report_run_url".into(),
        format!("https://app.mode.com/{org}/reports/{run:012x}/runs/{seq}").into(),
    );
    OutgoingEvent {
        org: org.into(),
        event_type: EVENT_TYPE.into(),
        id: format!("{org}-{seq}-{}", uuid::Uuid::now_v7().simple()),
        data,
    }
}

/// Publishes into one namespace's events exchange on a connection of its own.
#[derive(Debug)]
pub struct Source {
    connection: Connection,
    channel: Channel,
    producer: Producer,
    exchange: String,
}

impl Source {
    /// Connects and opens a confirm channel.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let connection = hookwire_amqp::connect(url, &format!("{namespace}-publisher"))
            .await
            .context("the bench cannot connect to RabbitMQ")?;
        let publisher = Publisher::open(&connection, Duration::from_secs(30)).await?;
        let channel = publisher.channel().clone();
        Ok(Self {
            connection,
            channel,
            producer: Producer::with_publisher(publisher, namespace, Catalog::builtin()),
            exchange: Names::new(namespace).events_exchange(),
        })
    }

    /// Publishes every event of `tally` for `org`, at most `window` unconfirmed at once,
    /// and at `rate` events per second if given. Returns the seconds until the last
    /// confirm.
    pub async fn publish_all(
        &self,
        org: &str,
        tally: &Arc<Tally>,
        window: usize,
        rate: Option<f64>,
    ) -> Result<f64> {
        self.publish_range(org, tally, 0..tally.events(), window, rate)
            .await
    }

    /// Publishes events `seqs` of `tally` for `org`, as [`Source::publish_all`] does.
    pub async fn publish_range(
        &self,
        org: &str,
        tally: &Arc<Tally>,
        seqs: std::ops::Range<usize>,
        window: usize,
        rate: Option<f64>,
    ) -> Result<f64> {
        self.publish_spread(|_| org, tally, seqs, window, rate)
            .await
    }

    /// Publishes events `seqs` of `tally`, each for `org_of(seq)`, as
    /// [`Source::publish_all`] does.
    pub async fn publish_spread<'a>(
        &self,
        org_of: impl Fn(usize) -> &'a str,
        tally: &Arc<Tally>,
        seqs: std::ops::Range<usize>,
        window: usize,
        rate: Option<f64>,
    ) -> Result<f64> {
        let expected = seqs.len();
        let first = seqs.start;
        let started = Instant::now();
        let confirms = ConfirmWindow::new(window);
        let start = tokio::time::Instant::now();
        for seq in seqs {
            if let Some(rate) = rate {
                let at = (seq - first) as f64 / rate;
                tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
            }
            let published = confirms
                .publish(&self.channel, &self.exchange, EVENT_TYPE, || {
                    let encoded = self
                        .producer
                        .encode(&event(org_of(seq), tally.run(), seq))?;
                    tally.mark_sent(seq);
                    Ok(encoded)
                })
                .await?;
            if !published {
                break;
            }
        }
        confirms.finish(expected).await?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// Publishes `bodies` (JSON) to `queue` through the default exchange on a connection of
/// its own, at most `window` unconfirmed at once: entries written straight into a
/// stream, as the writer of that stream would. Returns the seconds until the last confirm.
pub async fn publish_raw(
    url: &str,
    connection_name: &str,
    queue: &str,
    bodies: &[Vec<u8>],
    window: usize,
) -> Result<f64> {
    let connection = hookwire_amqp::connect(url, connection_name).await?;
    let publisher = Publisher::open(&connection, Duration::from_secs(60)).await?;
    let channel = publisher.channel().clone();
    let started = Instant::now();
    let confirms = ConfirmWindow::new(window);
    for body in bodies {
        let published = confirms
            .publish(&channel, "", queue, || {
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into());
                Ok((body.as_slice(), properties))
            })
            .await?;
        if !published {
            break;
        }
    }
    let finished = confirms.finish(bodies.len()).await;
    let _ = connection.close(200, "published".into()).await;
    finished?;
    Ok(started.elapsed().as_secs_f64())
}

/// Confirmed `mandatory` publishes with at most `window` unconfirmed at once, their
/// confirms awaited in publish order by a task of their own.
struct ConfirmWindow {
    permits: Arc<Semaphore>,
    pending: mpsc::UnboundedSender<(PublisherConfirm, OwnedSemaphorePermit)>,
    drain: tokio::task::JoinHandle<Result<usize>>,
}

impl ConfirmWindow {
    fn new(window: usize) -> Self {
        let (pending, rx) = mpsc::unbounded_channel();
        Self {
            permits: Arc::new(Semaphore::new(window.max(1))),
            pending,
            drain: tokio::spawn(await_confirms(rx)),
        }
    }

    /// Waits for a slot, then publishes what `message` makes (made only once the slot is
    /// free, so that a send time taken inside it excludes the wait). `false` when the
    /// confirms are no longer awaited (one failed: [`ConfirmWindow::finish`] says which).
    async fn publish<B: AsRef<[u8]>>(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        message: impl FnOnce() -> Result<(B, BasicProperties)>,
    ) -> Result<bool> {
        let permit = self.permits.clone().acquire_owned().await?;
        let (body, properties) = message()?;
        // lapin's publish rather than `Publisher::send`: the window awaits the confirms
        // itself, in order on one task, with no timeout per message.
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body.as_ref(),
                properties,
            )
            .await
            .context("basic.publish")?;
        Ok(self.pending.send((confirm, permit)).is_ok())
    }

    /// Waits for every confirm; fails unless `expected` publishes were acked.
    async fn finish(self, expected: usize) -> Result<()> {
        drop(self.pending);
        let confirmed = self.drain.await??;
        if confirmed != expected {
            bail!("{confirmed} of {expected} publishes confirmed");
        }
        Ok(())
    }
}

/// Awaits confirms in publish order (the broker confirms in order), releasing a window
/// slot with each.
async fn await_confirms(
    mut rx: mpsc::UnboundedReceiver<(PublisherConfirm, OwnedSemaphorePermit)>,
) -> Result<usize> {
    let mut confirmed = 0;
    while let Some((confirm, permit)) = rx.recv().await {
        match confirm.await? {
            Confirmation::Ack(None) => confirmed += 1,
            Confirmation::Ack(Some(_)) => bail!("a publish was returned: no queue is bound"),
            Confirmation::Nack(_) | Confirmation::NotRequested => bail!("a publish was nacked"),
        }
        drop(permit);
    }
    Ok(confirmed)
}

/// Consumes `queue` with `prefetch`, acking one message at a time as hookwire does,
/// until every event of `tally` is counted or `deadline` passes.
pub async fn consume_until(
    connection: &Connection,
    queue: &str,
    prefetch: u16,
    tally: Arc<Tally>,
    deadline: Instant,
) -> Result<()> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "hwbench-baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while tally.delivered() < tally.expected() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(next) = tokio::time::timeout(left, consumer.next()).await else {
            break;
        };
        let Some(delivery) = next else {
            bail!("the baseline consumer was cancelled");
        };
        let delivery = delivery?;
        match parse_run_and_seq(&delivery.data) {
            Some((run, seq)) => tally.deliver(run, seq, 0),
            None => tally.deliver(0, usize::MAX, 0),
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    channel.close(200, "done".into()).await?;
    Ok(())
}

/// Ready messages and consumers of `queue`.
pub async fn queue_counts(connection: &Connection, queue: &str) -> Result<(u32, u32)> {
    let q = hookwire_amqp::inspect_queue(connection, queue)
        .await
        .with_context(|| format!("queue {queue}"))?;
    Ok((q.message_count(), q.consumer_count()))
}

/// `bodies` sealed for `stream` as one writer's session would seal them, so that the
/// nodes take them as they take their own.
pub(crate) fn sealed(key: &[u8; 32], stream: &str, bodies: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let key = hookwire_amqp::envelope::StreamKey::derive(key);
    let session = uuid::Uuid::now_v7();
    (0u64..)
        .zip(bodies)
        .map(|(seq, body)| {
            let origin = hookwire_amqp::envelope::Origin {
                node: "bench".into(),
                session,
                seq,
            };
            key.seal(stream, &origin, body)
        })
        .collect()
}
