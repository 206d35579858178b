//! What the runner publishes: good events, messages broken on purpose, and a publisher
//! that reconnects and sends an unconfirmed message again with the same id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hookwire_amqp::lapin::types::{AMQPValue, FieldTable, ShortString};
use hookwire_amqp::lapin::{BasicProperties, Connection};
use hookwire_amqp::{Brokers, OutgoingEvent, Producer, Publisher};
use hookwire_core::Catalog;
use serde_json::json;

/// The organization every scenario's events belong to.
pub const ORG: &str = "acme";
/// The event type every scenario publishes.
pub const EVENT: &str = "report_run_completed";

/// A good event with the id `id`.
pub fn event(id: &str) -> OutgoingEvent {
    let mut data = serde_json::Map::new();
    data.insert(
        "report_run_url".into(),
        format!("https://mode.test/runs/{id}").into(),
    );
    OutgoingEvent {
        org: ORG.into(),
        event_type: EVENT.into(),
        id: id.to_owned(),
        data,
    }
}

/// The ways a message breaks the wire contract, with the reason it must die for.
pub const POISON: [&str; 6] = [
    "invalid_json",
    "missing_org",
    "unknown_event",
    "missing_field",
    "event_mismatch",
    "too_large",
];

fn poison_message(kind: &str, id: &str) -> (String, Vec<u8>, BasicProperties) {
    let mut headers = FieldTable::default();
    if kind != "missing_org" {
        headers.insert(ShortString::from("org"), AMQPValue::LongString(ORG.into()));
    }
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(id.into())
        .with_headers(headers);
    let good = json!({"event": EVENT, "report_run_url": format!("https://mode.test/p/{id}")});
    let (key, body) = match kind {
        "invalid_json" => (EVENT, b"{not json".to_vec()),
        "unknown_event" => (
            "report_run_exploded",
            serde_json::to_vec(&json!({"event": "report_run_exploded", "report_run_url": "u"}))
                .unwrap_or_default(),
        ),
        "missing_field" => (
            EVENT,
            serde_json::to_vec(&json!({"event": EVENT})).unwrap_or_default(),
        ),
        "event_mismatch" => (
            EVENT,
            serde_json::to_vec(&json!({"event": "report_created", "report_run_url": "u"}))
                .unwrap_or_default(),
        ),
        "too_large" => (
            EVENT,
            serde_json::to_vec(&json!({"event": EVENT, "report_run_url": "x".repeat(70 * 1024)}))
                .unwrap_or_default(),
        ),
        _ => (EVENT, serde_json::to_vec(&good).unwrap_or_default()),
    };
    (key.to_owned(), body, props)
}

/// One message for the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A good event, with its id.
    Good(String),
    /// A message with this id, broken in this way (one of [`POISON`]).
    Broken(String, &'static str),
}

impl Message {
    /// The `i`th message of a run whose ids start with `prefix`: one in `broken_every`
    /// is broken (none when 0), in turn each way of [`POISON`].
    pub fn nth(prefix: &str, i: usize, broken_every: usize) -> Self {
        let id = format!("{prefix}-{i}");
        if broken_every > 0 && i % broken_every == broken_every - 1 {
            Self::Broken(id, POISON[(i / broken_every) % POISON.len()])
        } else {
            Self::Good(id)
        }
    }

    fn id(&self) -> &str {
        match self {
            Self::Good(id) | Self::Broken(id, _) => id,
        }
    }
}

/// When each event id was first sent, for the ledger: a duplicate of a pair that was never
/// requested before a disturbance is explained by its event having been sent before it.
/// Every id is unique to its run, so one map serves every scenario of the process.
static FIRST_SENT: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Mutex::default);

/// When the event `id` was first sent, if it was.
pub fn first_sent(id: &str) -> Option<Instant> {
    FIRST_SENT.lock().expect("lock").get(id).copied()
}

/// Publishes with confirms, riding out broker restarts and closed connections: good events
/// through hookwire's [`Producer`], broken ones raw. A message that is not confirmed may
/// or may not be stored, so it is sent again with the same id (a duplicate keeps its
/// webhook-id) until it is confirmed.
#[derive(Debug)]
pub struct Sender {
    brokers: Brokers,
    namespace: String,
    producer: Option<Producer>,
    raw: Option<(Connection, Publisher)>,
    /// Publishes that were not confirmed and were sent again.
    pub retried: u32,
}

impl Sender {
    /// A sender to `namespace`'s events exchange (connects lazily).
    pub fn new(url: &str, namespace: &str) -> Self {
        Self::to_any(vec![url.to_owned()], namespace)
    }

    /// A sender to `namespace`'s events exchange on any of `urls`, the nodes of a
    /// cluster: the producer moves to the next node that answers after a failure.
    pub fn to_any(urls: Vec<String>, namespace: &str) -> Self {
        Self {
            brokers: Brokers::new(urls),
            namespace: namespace.to_owned(),
            producer: None,
            raw: None,
            retried: 0,
        }
    }

    /// Sends `message` until it is confirmed; gives up after about five minutes.
    pub async fn send(&mut self, message: &Message) -> Result<()> {
        if let Message::Good(id) = message {
            FIRST_SENT
                .lock()
                .expect("lock")
                .entry(id.clone())
                .or_insert_with(Instant::now);
        }
        let mut tries = 0;
        loop {
            let error = match self.connect(message).await {
                Err(e) => e,
                Ok(()) => match self.publish(message).await {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        self.retried += 1;
                        e
                    }
                },
            };
            tries += 1;
            if tries > 600 {
                bail!("{} was never confirmed: {error:#}", message.id());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn connect(&mut self, message: &Message) -> Result<()> {
        match message {
            Message::Good(_) if self.producer.is_none() => {
                self.producer = Some(
                    Producer::connect_any(
                        self.brokers.clone(),
                        &self.namespace,
                        "hookwire-chaos-producer",
                        Catalog::builtin(),
                    )
                    .await?,
                );
            }
            Message::Broken(..) if self.raw.is_none() => {
                let connection = self.brokers.connect("hookwire-chaos-poisoner").await?;
                let publisher = Publisher::open(&connection, Duration::from_secs(30)).await?;
                self.raw = Some((connection, publisher));
            }
            _ => {}
        }
        Ok(())
    }

    /// One publish on the open connection; a failure drops that connection.
    async fn publish(&mut self, message: &Message) -> Result<()> {
        let result = match message {
            Message::Good(id) => match &self.producer {
                Some(p) => p.publish(&event(id)).await.map_err(anyhow::Error::from),
                None => bail!("not connected"),
            },
            Message::Broken(id, kind) => match &self.raw {
                Some((_, raw)) => {
                    let (key, body, props) = poison_message(kind, id);
                    raw.publish(&format!("{}.events", self.namespace), &key, &body, props)
                        .await
                        .map_err(anyhow::Error::from)
                }
                None => bail!("not connected"),
            },
        };
        if result.is_err() {
            match message {
                Message::Good(_) => self.producer = None,
                Message::Broken(..) => self.raw = None,
            }
        }
        result
    }

    /// Closes the connections.
    pub async fn close(self) {
        if let Some(p) = self.producer {
            let _ = p.close().await;
        }
        if let Some((connection, _)) = self.raw {
            let _ = connection.close(200, "bye".into()).await;
        }
    }
}

/// Publishes good events with the ids `ids` at an even pace over `window`. Returns how
/// many publishes were not confirmed and were sent again.
pub async fn publish_paced(
    url: String,
    namespace: String,
    ids: Vec<String>,
    window: Duration,
) -> Result<u32> {
    publish_paced_to(vec![url], namespace, ids, window, Arc::default()).await
}

/// [`publish_paced`] to any of `urls` (a cluster's nodes); `next` holds the index of the
/// event being published, so that a scenario knows which events were first published
/// after a moment.
pub async fn publish_paced_to(
    urls: Vec<String>,
    namespace: String,
    ids: Vec<String>,
    window: Duration,
    next: Arc<AtomicUsize>,
) -> Result<u32> {
    let start = Instant::now();
    let mut sender = Sender::to_any(urls, &namespace);
    let n = ids.len().max(1);
    for (i, id) in ids.into_iter().enumerate() {
        if i % 10 == 0 {
            let due = start + window.mul_f64(i as f64 / n as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        next.store(i, Ordering::SeqCst);
        sender.send(&Message::Good(id)).await?;
    }
    next.store(n, Ordering::SeqCst);
    let retried = sender.retried;
    sender.close().await;
    Ok(retried)
}
