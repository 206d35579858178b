//! The daemon: a supervisor that keeps one broker session alive, reconnecting after any
//! failure, until shutdown.
//!
//! A session is one connection with a confirm channel for publishing and one consumer
//! channel per queue. Each message is settled on its own: a handler that fails for a
//! passing reason (a publish refused, a store write failed) keeps its message and handles
//! it again after a backoff; a message that can never be handled is dead-lettered with
//! the reason `unprocessable`. Only an unusable connection or channel ends the session:
//! its unacked messages go back to their queues and are redelivered to the next session,
//! so a failure can duplicate a delivery but never lose one. Delivery tags are never
//! carried from a dead channel to a new one.
//!
//! With several broker URLs (a cluster's nodes), each session opens on the node the last
//! one used, or on the next that answers; a session that fails moves the next one on to
//! the next node.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use hookwire_amqp::{Brokers, Publisher, wire};
use hookwire_core::DeadReason;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::acks::Acks;
use crate::engine::Engine;
use crate::error::Failure;
use crate::{Error, Result};

mod settle;

use settle::{Signals, handle};

/// Buffered messages are handled after a consumer is cancelled, so that shutdown does
/// not hand them back to the broker (which would count a redelivery).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How long closing a session's connection waits for the broker. lapin never settles a
/// close that it queued as the connection died (seen in the serial test when the broker
/// app stops), and the supervisor must go on to reconnect.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the daemon talks to the broker. `Debug` hides the URL's password.
#[derive(Clone)]
pub struct AmqpSettings {
    /// Broker URLs: one, or a cluster's nodes.
    pub urls: Vec<String>,
    /// `amqp.tls_*`, for `amqps://` URLs.
    pub tls: Option<hookwire_amqp::BrokerTls>,
    /// Connection name shown by the broker.
    pub connection_name: String,
    /// Prefetch of each consumer.
    pub prefetch: u16,
    /// Longest wait between reconnection attempts.
    pub reconnect_max_delay: Duration,
    /// How long a publish waits for its confirm.
    pub confirm_timeout: Duration,
    /// How long opening a session may take before it is abandoned and retried.
    pub open_timeout: Duration,
    /// How long in-flight attempts may run after shutdown begins.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSettings")
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|u| hookwire_core::config::redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("tls", &self.tls)
            .field("connection_name", &self.connection_name)
            .field("prefetch", &self.prefetch)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("open_timeout", &self.open_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

/// The delivery daemon.
#[derive(Debug)]
pub struct Daemon {
    engine: Arc<Engine>,
    amqp: AmqpSettings,
    brokers: Brokers,
    ready: Arc<AtomicBool>,
}

enum SessionEnd {
    Shutdown,
    Broken(Error),
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Events,
    Tasks,
    Dead,
}

impl Daemon {
    /// A daemon around an engine.
    pub fn new(engine: Arc<Engine>, amqp: AmqpSettings) -> Self {
        Self {
            engine,
            brokers: Brokers::new(amqp.urls.clone()).with_tls(amqp.tls.clone()),
            amqp,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True while a session is consuming; `/readyz` reads it.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// Runs until `shutdown` completes. Broker failures are retried forever. Any number of
    /// daemons may consume one namespace: they compete for its messages.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let stop = CancellationToken::new();
        let watcher = {
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        };
        tokio::pin!(watcher);
        let supervise = self.supervise(stop.clone());
        tokio::pin!(supervise);
        loop {
            tokio::select! {
                result = &mut supervise => return result,
                () = &mut watcher, if !stop.is_cancelled() => {}
            }
        }
    }

    async fn supervise(&self, stop: CancellationToken) -> Result<()> {
        crate::telemetry::register_alerted_counters();
        crate::telemetry::broker_connected(false);
        let mut backoff = self.backoff();
        loop {
            // lapin has no handshake timeout: a broker that accepts the connection but
            // never answers would hold this open forever.
            let open = tokio::time::timeout(self.amqp.open_timeout, self.open_session());
            let opened = tokio::select! {
                opened = open => opened.unwrap_or_else(|_| Err(Error::SessionTimeout(self.amqp.open_timeout))),
                () = stop.cancelled() => return Ok(()),
            };
            match opened {
                Ok(session) => {
                    backoff = self.backoff();
                    self.ready.store(true, Ordering::SeqCst);
                    crate::telemetry::broker_connected(true);
                    crate::telemetry::broker_session(self.brokers.current_address());
                    info!(
                        namespace = %self.engine.topology().names.namespace(),
                        broker = %self.brokers.current_address(),
                        "Consuming."
                    );
                    let end = session.run(&self.engine, &stop, &self.amqp).await;
                    self.ready.store(false, Ordering::SeqCst);
                    crate::telemetry::broker_connected(false);
                    match end {
                        SessionEnd::Shutdown => return Ok(()),
                        SessionEnd::Broken(e) => {
                            warn!(error = %e, "Broker session ended; reconnecting.")
                        }
                    }
                }
                Err(e) => warn!(error = %e, "Cannot open a broker session; retrying."),
            }
            self.brokers.rotate();
            let delay = backoff.next().unwrap_or(self.amqp.reconnect_max_delay);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => return Ok(()),
            }
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(self.amqp.reconnect_max_delay)
            .with_jitter()
            .without_max_times()
            .build()
    }

    async fn open_session(&self) -> Result<Session> {
        let connection = self.brokers.connect(&self.amqp.connection_name).await?;
        let publisher = Publisher::open(&connection, self.amqp.confirm_timeout).await?;
        let topology = self.engine.topology();
        topology.declare(publisher.channel()).await?;
        let events_queue = topology.names.events_queue();
        let mut consumers = Vec::new();
        for (source, queue) in [
            (Source::Events, events_queue),
            (Source::Tasks, topology.names.deliveries_queue()),
            (Source::Dead, topology.names.dead_queue()),
        ] {
            let (channel, consumer) = self.consume(&connection, &queue).await?;
            consumers.push((source, channel, consumer));
        }
        let probe = connection.create_channel().await?;
        Ok(Session {
            connection,
            publisher,
            consumers,
            probe,
        })
    }

    async fn consume(&self, connection: &Connection, queue: &str) -> Result<(Channel, Consumer)> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.amqp.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }
}

struct Session {
    connection: Connection,
    publisher: Publisher,
    consumers: Vec<(Source, Channel, Consumer)>,
    /// For passive declares only: the queue-depth gauges.
    probe: Channel,
}

impl Session {
    /// Consumes until `stop` or a failure, then shuts down or gives up accordingly.
    async fn run(
        self,
        engine: &Arc<Engine>,
        stop: &CancellationToken,
        amqp: &AmqpSettings,
    ) -> SessionEnd {
        let Session {
            connection,
            publisher,
            consumers,
            probe,
        } = self;
        let depth_poller = tokio::spawn(poll_queue_depths(probe, engine.topology().clone()));
        let mut consuming = Consuming::start(engine, publisher, consumers);
        let end = consuming.until_ended(stop).await;
        depth_poller.abort();
        match end {
            SessionEnd::Broken(_) => {
                consuming.abandon();
                close(&connection, 320, "session broken").await;
            }
            SessionEnd::Shutdown => {
                consuming.shut_down(amqp).await;
                engine.attempt_log().sync().await;
                engine.payloads().sync().await;
                close(&connection, 200, "shutdown").await;
            }
        }
        end
    }
}

/// A message from a consumer, with its channel's acks.
type Received = (Acks, lapin::Result<Delivery>);

/// One consumer's next message, or `None` once that consumer has ended.
type Incoming = (Source, Option<Received>);

/// A session's consumers at work: every consumer's messages in one stream, and the
/// handlers they were handed to.
struct Consuming<'a> {
    engine: &'a Arc<Engine>,
    // Shared, not cloned per message: a lapin channel is over a dozen `Arc`s.
    publisher: Arc<Publisher>,
    /// `broken`: cancelled by a handler that found a channel unusable, or by a failed
    /// ack; `stopping`: cancelled when shutdown begins.
    signals: Signals,
    messages: SelectAll<BoxStream<'static, Incoming>>,
    handlers: TaskTracker,
    /// Each consumer's channel and tag, for cancelling it at shutdown.
    cancels: Vec<(Channel, ShortString)>,
    ack_tasks: Vec<JoinHandle<()>>,
}

impl<'a> Consuming<'a> {
    /// Merges the consumers into one stream, each message with its channel's acks; a
    /// consumer that ends says so with a final `None`, which ends the session.
    fn start(
        engine: &'a Arc<Engine>,
        publisher: Publisher,
        consumers: Vec<(Source, Channel, Consumer)>,
    ) -> Self {
        let signals = Signals {
            broken: CancellationToken::new(),
            stopping: CancellationToken::new(),
        };
        let broken = signals.broken.clone();
        let mut cancels = Vec::new();
        let mut ack_tasks = Vec::new();
        let messages = futures_util::stream::select_all(consumers.into_iter().map(
            |(source, channel, consumer)| {
                let (acks, task) = Acks::spawn(channel.clone(), broken.clone());
                ack_tasks.push(task);
                cancels.push((channel, consumer.tag()));
                consumer
                    .map(move |item| (source, Some((acks.clone(), item))))
                    .chain(futures_util::stream::once(async move { (source, None) }))
                    .boxed()
            },
        ));
        Self {
            engine,
            publisher: Arc::new(publisher),
            signals,
            messages,
            handlers: TaskTracker::new(),
            cancels,
            ack_tasks,
        }
    }

    /// Hands every message to a handler until `stop`, or until the session breaks.
    async fn until_ended(&mut self, stop: &CancellationToken) -> SessionEnd {
        loop {
            let failure = tokio::select! {
                () = stop.cancelled() => return SessionEnd::Shutdown,
                () = self.signals.broken.cancelled() => Some(Error::Internal("a broker channel failed".into())),
                next = self.messages.next() => match next {
                    Some((source, item)) => self.dispatch(source, item),
                    None => Some(Error::Internal("every consumer ended".into())),
                },
            };
            if let Some(e) = failure {
                return SessionEnd::Broken(e);
            }
        }
    }

    /// Spawns the message's handler, or says why the session cannot go on.
    fn dispatch(&self, source: Source, item: Option<Received>) -> Option<Error> {
        match item {
            Some((acks, Ok(message))) => {
                // Boxed: the handler's future is kilobytes, and a task holding it inline
                // is copied whole when it is spawned and again when it finishes.
                self.handlers.spawn(Box::pin(handle(
                    self.engine.clone(),
                    self.publisher.clone(),
                    acks,
                    self.signals.clone(),
                    source,
                    message,
                )));
                None
            }
            Some((_, Err(e))) => Some(Error::Amqp(e)),
            None => Some(Error::Internal(format!("the {source:?} consumer ended"))),
        }
    }

    /// After a break: in-flight handlers finish on their own; their acks are not sent
    /// and the broker redelivers those messages to the next session.
    fn abandon(&self) {
        self.ack_tasks.iter().for_each(JoinHandle::abort);
    }

    /// A graceful end: no new messages, the ones already here handled, in-flight attempts
    /// given their grace, and the last acks sent.
    async fn shut_down(&mut self, amqp: &AmqpSettings) {
        info!("Shutting down: consuming stopped, finishing in-flight deliveries.");
        self.signals.stopping.cancel();
        self.cancel_consumers().await;
        self.handle_buffered().await;
        self.finish_in_flight(amqp).await;
        self.send_last_acks(amqp).await;
    }

    async fn cancel_consumers(&mut self) {
        for (channel, tag) in &self.cancels {
            let _ = channel
                .basic_cancel(tag.clone(), BasicCancelOptions::default())
                .await;
        }
    }

    /// Messages the broker had already sent are handled, not handed back: a handed-back
    /// message would count one more delivery against its limit.
    async fn handle_buffered(&mut self) {
        while let Ok(Some((source, item))) =
            tokio::time::timeout(DRAIN_TIMEOUT, self.messages.next()).await
        {
            if item.is_some() && self.dispatch(source, item).is_some() {
                break;
            }
        }
    }

    /// Waits out the shutdown grace, then has the handlers still running hand their
    /// messages back.
    async fn finish_in_flight(&mut self, amqp: &AmqpSettings) {
        self.handlers.close();
        if tokio::time::timeout(amqp.shutdown_grace, self.handlers.wait())
            .await
            .is_err()
        {
            warn!(
                in_flight = self.handlers.len(),
                "Shutdown grace is over; handing back in-flight deliveries."
            );
            self.engine.end_grace();
            if tokio::time::timeout(amqp.confirm_timeout, self.handlers.wait())
                .await
                .is_err()
            {
                error!(
                    in_flight = self.handlers.len(),
                    "Deliveries could not be handed back; the broker will redeliver them."
                );
            }
        }
    }

    /// The last acks go out before the connection closes; a handler still running holds
    /// its channel's ack task open, so it is not waited for past the timeout.
    async fn send_last_acks(&mut self, amqp: &AmqpSettings) {
        drop(std::mem::take(&mut self.messages));
        for task in std::mem::take(&mut self.ack_tasks) {
            let _ = tokio::time::timeout(amqp.confirm_timeout, task).await;
        }
    }
}

/// Closes the connection, waiting at most [`CLOSE_TIMEOUT`] for the broker. Where the
/// wait ran out (the socket had died, and lapin's I/O thread with it), the connection is
/// given up as it is.
async fn close(connection: &Connection, code: u16, reason: &str) {
    let closing = connection.close(code, reason.into());
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        warn!(
            timeout = CLOSE_TIMEOUT.as_secs(),
            "The broker connection did not close in time; given up."
        );
    }
}

/// How often queue depths are read for the gauges.
const DEPTH_POLL: Duration = Duration::from_secs(10);

/// Sets `hookwire_queue_messages` for every queue of the namespace, until aborted.
async fn poll_queue_depths(probe: Channel, topology: hookwire_amqp::Topology) {
    let n = &topology.names;
    let mut queues = vec![n.events_queue(), n.deliveries_queue(), n.dead_queue()];
    queues.extend(topology.tiers.iter().map(|t| n.retry_queue(*t)));
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let mut tick = tokio::time::interval(DEPTH_POLL);
    loop {
        tick.tick().await;
        for queue in &queues {
            match probe
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(q) => crate::telemetry::queue_depth(queue, q.message_count()),
                // A missing queue closed the channel; the next session declares again.
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests;
