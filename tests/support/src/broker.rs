//! The real broker, one namespace per test.

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{BasicProperties, Channel, Connection};

/// The broker tests use: `HOOKWIRE_TEST_AMQP_URL`, or the local one.
pub fn amqp_url() -> String {
    std::env::var("HOOKWIRE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A namespace no other test uses; `tests/sweep-namespaces` removes leftovers by the prefix.
pub fn unique_namespace() -> String {
    format!(
        "hwtest-{}",
        &uuid::Uuid::now_v7().simple().to_string()[16..]
    )
}

/// A connection for inspecting queues.
#[derive(Debug)]
pub struct Broker {
    connection: Connection,
}

impl Broker {
    /// Connects, failing the test with a clear message when RabbitMQ is not there.
    pub async fn connect() -> Self {
        let url = amqp_url();
        match hookwire_amqp::connect(&url, "hookwire-test-inspector").await {
            Ok(connection) => Self { connection },
            Err(e) => panic!(
                "RabbitMQ is not answering at {url} ({e}). Start it with tests/ensure-broker; these tests need a real broker."
            ),
        }
    }

    /// The connection, for publishing in tests.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    async fn channel(&self) -> Channel {
        self.connection
            .create_channel()
            .await
            .expect("open a channel")
    }

    /// Ready messages in `queue`.
    pub async fn ready(&self, queue: &str) -> u32 {
        self.inspect(queue).await.message_count()
    }

    /// Consumers of `queue`.
    pub async fn consumers(&self, queue: &str) -> u32 {
        self.inspect(queue).await.consumer_count()
    }

    async fn inspect(&self, queue: &str) -> lapin::Queue {
        hookwire_amqp::inspect_queue(&self.connection, queue)
            .await
            .unwrap_or_else(|e| panic!("queue {queue} should exist: {e}"))
    }

    /// Takes every message from `queue`, acking each.
    pub async fn drain(&self, queue: &str) -> Vec<(BasicProperties, Vec<u8>)> {
        let channel = self.channel().await;
        let mut out = Vec::new();
        while let Some(msg) = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("basic_get on {queue}: {e}"))
        {
            msg.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            out.push((msg.delivery.properties.clone(), msg.delivery.data.clone()));
        }
        let _ = channel.close(200, "done".into()).await;
        out
    }

    /// Takes every message from `queue` without acking it, then closes the channel: the
    /// broker puts them back as redelivered (a consumer that stopped before its acks).
    /// Returns how many.
    pub async fn return_unacked(&self, queue: &str) -> usize {
        let channel = self.channel().await;
        let mut taken = 0;
        while channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("basic_get on {queue}: {e}"))
            .is_some()
        {
            taken += 1;
        }
        channel
            .close(200, "returned".into())
            .await
            .expect("close the channel");
        taken
    }

    /// Publishes a raw message to the namespace's events exchange, confirmed.
    pub async fn publish_raw(
        &self,
        namespace: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        let publisher =
            hookwire_amqp::Publisher::open(&self.connection, std::time::Duration::from_secs(10))
                .await
                .expect("confirm channel");
        publisher
            .publish(
                &format!("{namespace}.events"),
                routing_key,
                body,
                properties,
            )
            .await
            .expect("raw publish confirmed");
    }

    /// Reads one queue's consumer count and unacked count from `rabbitmqctl`.
    pub fn unacked(queue: &str) -> u64 {
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "list_queues",
                "-q",
                "--no-table-headers",
                "name",
                "messages_unacknowledged",
            ])
            .output()
            .expect("rabbitmqctl runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(name, _)| *name == queue)
            .and_then(|(_, n)| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("rabbitmqctl lists no queue {queue}"))
    }
}
