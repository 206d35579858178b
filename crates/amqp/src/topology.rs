//! The broker topology of one namespace (docs/architecture.md, "Broker topology"),
//! declared idempotently.
//!
//! Every queue is a durable quorum queue. Queues that dead-letter do so with
//! `x-dead-letter-strategy=at-least-once`, which RabbitMQ only accepts together with
//! `x-overflow=reject-publish` (quorum queue docs, "Dead Lettering").
//!
//! On a cluster ([`Topology::replication`] set), every quorum queue is declared with
//! `x-quorum-initial-group-size` and the changes stream with `x-initial-cluster-size`,
//! both with `x-queue-leader-locator=balanced` so that leaders spread over the nodes.
//! RabbitMQ compares all three on every redeclaration (checked on 3.10.8): a queue keeps
//! the arguments it was created with, and a declaration with others is refused (406).

use std::collections::BTreeSet;
use std::time::Duration;

use hookwire_core::RetryPlan;
use hookwire_core::retry::{tier_name, tier_ttl};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::Result;
use crate::stream::Declared;
pub use crate::stream::LEADER_LOCATOR;

/// Each unacked redelivery (crash, dropped connection, broker restart) counts; 20 leaves
/// room for many restarts before a message is called a crash loop
/// (docs/delivery-semantics.md, "Crash loops").
pub const DELIVERY_LIMIT: i64 = 20;
/// The routing key from the work exchange to the deliveries queue.
pub const DELIVER_KEY: &str = "deliver";
/// The routing key from the dead-letter exchange to the dead queue.
pub const DEAD_KEY: &str = "dead";

/// The names of a namespace's exchanges and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    namespace: String,
}

impl Names {
    /// Names under `namespace` (e.g. `hookwire`).
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.namespace)
    }

    /// The stream of the store's changes, which every node applies (replication).
    pub fn changes_stream(&self) -> String {
        self.name("changes")
    }

    /// The stream of kept event bodies, which every node applies (replication).
    pub fn payloads_stream(&self) -> String {
        self.name("payloads")
    }

    /// The stream of attempt records, which every node applies to its attempt log
    /// (replication).
    pub fn attempts_stream(&self) -> String {
        self.name("attempts")
    }

    /// The namespace itself.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// Topic exchange producers publish to.
    pub fn events_exchange(&self) -> String {
        self.name("events")
    }
    /// Quorum queue of incoming events, bound `#`.
    pub fn events_queue(&self) -> String {
        self.name("events")
    }
    /// Fanout exchange for events no queue was bound for.
    pub fn unrouted_exchange(&self) -> String {
        self.name("unrouted")
    }
    /// Queue of unrouted events.
    pub fn unrouted_queue(&self) -> String {
        self.name("unrouted")
    }
    /// Direct exchange of single-subscription delivery tasks.
    pub fn work_exchange(&self) -> String {
        self.name("work")
    }
    /// Quorum queue of delivery tasks.
    pub fn deliveries_queue(&self) -> String {
        self.name("deliveries")
    }
    /// Retry tier queue for `delay`, e.g. `hookwire.retry.30s`.
    pub fn retry_queue(&self, delay: Duration) -> String {
        self.name(&format!("retry.{}", tier_name(delay)))
    }
    /// Direct dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        self.name("dlx")
    }
    /// Quorum queue of dead letters.
    pub fn dead_queue(&self) -> String {
        self.name("dead")
    }
}

/// Reads `queue`'s counts with a passive declare, on a channel of its own because a
/// missing queue closes the channel it was asked on.
pub async fn inspect_queue(connection: &lapin::Connection, queue: &str) -> Result<lapin::Queue> {
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?;
    let _ = channel.close(200, "inspected".into()).await;
    Ok(q)
}

/// A namespace's topology: its names and its retry tiers.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The names.
    pub names: Names,
    /// Every tier delay: the retry schedule's distinct delays plus the deferral tier.
    pub tiers: BTreeSet<Duration>,
    /// The changes stream, declared when the store is replicated.
    pub changes: Option<ChangesStream>,
    /// Replicas of each queue and stream on a cluster; `None`: no replication arguments,
    /// the broker's defaults (a single broker's topology).
    pub replication: Option<u8>,
}

/// How the changes stream is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangesStream {
    /// Its `x-max-age`; `None` keeps it whole.
    pub max_age: Option<Duration>,
}

/// How long a stream keeps what it holds, and how much at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBounds {
    /// Its `x-max-age`.
    pub max_age: Duration,
    /// Its `x-max-length-bytes`.
    pub max_bytes: u64,
}

impl Topology {
    /// The topology of `namespace` with these tier delays (tools and tests; `serve`'s
    /// come from its [`RetryPlan`]).
    pub fn new(namespace: &str, tiers: impl IntoIterator<Item = Duration>) -> Self {
        Self {
            names: Names::new(namespace),
            tiers: tiers.into_iter().collect(),
            changes: None,
            replication: None,
        }
    }

    /// The topology of `namespace` with every tier of `plan`.
    pub fn of_plan(namespace: &str, plan: &RetryPlan) -> Self {
        Self::new(namespace, plan.tiers().iter().copied())
    }

    /// The topology `serve` declares for `config`: the schedule's tiers and the deferral tier.
    pub fn of_config(config: &hookwire_core::Config) -> hookwire_core::Result<Self> {
        let mut topology = Self::of_plan(&config.amqp.namespace, &config.retry_plan()?);
        topology.replication = config.amqp.replication();
        if config.replication.enabled {
            topology.changes = Some(ChangesStream {
                max_age: config.replication.changes_max_age,
            });
        }
        Ok(topology)
    }

    /// Declares the changes stream, when the store is replicated (`None` otherwise). A
    /// stream that exists with another `x-max-age` is used as it is, as the other
    /// streams are ([`crate::stream::declare_on`]).
    pub async fn declare_changes(&self, connection: &Connection) -> Result<Option<Declared>> {
        let Some(changes) = &self.changes else {
            return Ok(None);
        };
        crate::stream::declare_on(
            connection,
            &self.names.changes_stream(),
            crate::stream::arguments(changes.max_age, self.replication),
        )
        .await
        .map(Some)
    }

    /// Declares the stream of kept event bodies with `x-max-age` = `bounds.max_age` (a
    /// body is of no use past its retention) and `x-max-length-bytes` = `bounds.max_bytes`.
    /// An existing stream with other arguments is used as it is
    /// ([`crate::stream::declare_on`]).
    pub async fn declare_payloads(
        &self,
        connection: &Connection,
        bounds: StreamBounds,
    ) -> Result<Declared> {
        self.declare_bounded(connection, &self.names.payloads_stream(), bounds)
            .await
    }

    /// Declares the stream of attempt records with `x-max-age` = `bounds.max_age`, the
    /// attempt log's retention (a record older is pruned from every log anyway), and
    /// `x-max-length-bytes` = `bounds.max_bytes`. An existing stream with other arguments
    /// is used as it is.
    pub async fn declare_attempts(
        &self,
        connection: &Connection,
        bounds: StreamBounds,
    ) -> Result<Declared> {
        self.declare_bounded(connection, &self.names.attempts_stream(), bounds)
            .await
    }

    async fn declare_bounded(
        &self,
        connection: &Connection,
        name: &str,
        bounds: StreamBounds,
    ) -> Result<Declared> {
        crate::stream::declare_on(
            connection,
            name,
            crate::stream::bounded_arguments(
                Some(bounds.max_age),
                Some(bounds.max_bytes),
                self.replication,
            ),
        )
        .await
    }

    /// Declares every exchange and queue but the streams (the replication declares those
    /// it uses), and every binding. Safe to run any number of times.
    pub async fn declare(&self, channel: &Channel) -> Result<()> {
        let n = &self.names;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let bind = |q: String, x: String, key: &'static str| async move {
            channel
                .queue_bind(
                    q.into(),
                    x.into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
        };

        channel
            .exchange_declare(
                n.unrouted_exchange().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(n.unrouted_queue().into(), queue, self.quorum_arguments())
            .await?;
        bind(n.unrouted_queue(), n.unrouted_exchange(), "").await?;

        channel
            .exchange_declare(
                n.dead_letter_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(n.dead_queue().into(), queue, self.quorum_arguments())
            .await?;
        bind(n.dead_queue(), n.dead_letter_exchange(), DEAD_KEY).await?;

        let mut events_args = FieldTable::default();
        events_args.insert("alternate-exchange".into(), text(&n.unrouted_exchange()));
        channel
            .exchange_declare(
                n.events_exchange().into(),
                ExchangeKind::Topic,
                durable,
                events_args,
            )
            .await?;
        channel
            .queue_declare(
                n.events_queue().into(),
                queue,
                self.consumed_queue_arguments(),
            )
            .await?;
        bind(n.events_queue(), n.events_exchange(), "#").await?;

        channel
            .exchange_declare(
                n.work_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                n.deliveries_queue().into(),
                queue,
                self.consumed_queue_arguments(),
            )
            .await?;
        bind(n.deliveries_queue(), n.work_exchange(), DELIVER_KEY).await?;

        for tier in &self.tiers {
            channel
                .queue_declare(
                    n.retry_queue(*tier).into(),
                    queue,
                    self.retry_queue_arguments(*tier),
                )
                .await?;
        }
        Ok(())
    }

    /// Deletes every queue and exchange of the namespace (tests and `topology delete`).
    pub async fn delete(&self, channel: &Channel) -> Result<()> {
        let n = &self.names;
        let mut queues = vec![
            n.events_queue(),
            n.unrouted_queue(),
            n.deliveries_queue(),
            n.dead_queue(),
            n.changes_stream(),
            n.payloads_stream(),
            n.attempts_stream(),
        ];
        queues.extend(self.tiers.iter().map(|t| n.retry_queue(*t)));
        for q in queues {
            channel
                .queue_delete(q.into(), QueueDeleteOptions::default())
                .await?;
        }
        for x in [
            n.events_exchange(),
            n.unrouted_exchange(),
            n.work_exchange(),
            n.dead_letter_exchange(),
        ] {
            channel
                .exchange_delete(x.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }

    /// Arguments of the events and deliveries queues: a delivery limit against crash loops,
    /// dead-lettering to the dead queue.
    pub fn consumed_queue_arguments(&self) -> FieldTable {
        let mut args = self.dead_lettering(&self.names.dead_letter_exchange(), DEAD_KEY);
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        args
    }

    /// Arguments of a retry tier: no consumer; the TTL at the top of the jitter band expires
    /// messages back to the work exchange.
    pub fn retry_queue_arguments(&self, delay: Duration) -> FieldTable {
        let mut args = self.dead_lettering(&self.names.work_exchange(), DELIVER_KEY);
        let ttl_ms = i64::try_from(tier_ttl(delay).as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        args
    }

    /// Arguments every queue starts from: a quorum queue, with the replication arguments
    /// on a cluster.
    pub fn quorum_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), text("quorum"));
        if let Some(replicas) = self.replication {
            args.insert(
                "x-quorum-initial-group-size".into(),
                AMQPValue::LongInt(i32::from(replicas)),
            );
            args.insert("x-queue-leader-locator".into(), text(LEADER_LOCATOR));
        }
        args
    }

    fn dead_lettering(&self, exchange: &str, key: &str) -> FieldTable {
        let mut args = self.quorum_arguments();
        args.insert("x-dead-letter-exchange".into(), text(exchange));
        args.insert("x-dead-letter-routing-key".into(), text(key));
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
        args
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(args: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
        args.inner().get(key)
    }

    fn topology(replication: Option<u8>) -> Topology {
        let mut t = Topology::new("hw", [Duration::from_secs(30)]);
        t.replication = replication;
        t
    }

    #[test]
    fn a_single_broker_gets_no_replication_arguments() {
        let t = topology(None);
        for args in [
            t.quorum_arguments(),
            t.consumed_queue_arguments(),
            t.retry_queue_arguments(Duration::from_secs(30)),
        ] {
            assert_eq!(get(&args, "x-queue-type"), Some(&text("quorum")));
            assert_eq!(get(&args, "x-quorum-initial-group-size"), None);
            assert_eq!(get(&args, "x-queue-leader-locator"), None);
        }
    }

    #[test]
    fn every_queue_on_a_cluster_is_replicated_with_balanced_leaders() {
        let t = topology(Some(3));
        for args in [
            t.quorum_arguments(),
            t.consumed_queue_arguments(),
            t.retry_queue_arguments(Duration::from_secs(30)),
        ] {
            assert_eq!(
                get(&args, "x-quorum-initial-group-size"),
                Some(&AMQPValue::LongInt(3))
            );
            assert_eq!(
                get(&args, "x-queue-leader-locator"),
                Some(&text("balanced"))
            );
            // The replication arguments come on top of the rest.
            assert_eq!(get(&args, "x-queue-type"), Some(&text("quorum")));
        }
        let consumed = t.consumed_queue_arguments();
        assert_eq!(
            get(&consumed, "x-dead-letter-strategy"),
            Some(&text("at-least-once"))
        );
        assert_eq!(
            get(&consumed, "x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(DELIVERY_LIMIT))
        );
    }

    #[test]
    fn of_config_follows_the_urls() {
        let mut config = hookwire_core::Config::defaults();
        assert_eq!(
            Topology::of_config(&config).expect("topology").replication,
            None
        );
        config.amqp.set_broker_urls(
            (1..=3)
                .map(|i| format!("amqp://u:p@127.0.0.1:568{i}/%2f"))
                .collect(),
        );
        assert_eq!(
            Topology::of_config(&config).expect("topology").replication,
            Some(3)
        );
        config.amqp.replication_factor = Some(0);
        assert_eq!(
            Topology::of_config(&config).expect("topology").replication,
            None
        );
    }
}
