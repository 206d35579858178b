//! hookwire running in-process, assembled by the same [`App`] as `hookwire serve`: a fresh
//! store and namespace, seeded subscriptions, and a shutdown the test controls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hookwire_amqp::{Producer, Topology};
use hookwire_app::App;
use hookwire_core::{Catalog, Config, Secret, Subscription, now_ms};
use hookwire_store::{Change, Store};
use tokio::sync::oneshot;

use crate::{Broker, amqp_url, unique_namespace};

/// The bearer token test configs accept.
pub const API_TOKEN: &str = "test-token-0123456789";

/// A config for tests: loopback-only mode, a short retry schedule, a test key.
pub fn test_config(namespace: &str, store_path: &std::path::Path) -> Config {
    let mut c = Config::defaults();
    c.amqp.url = amqp_url();
    c.amqp.namespace = namespace.to_owned();
    c.amqp.connection_name = format!("hookwire-{namespace}");
    c.amqp.reconnect_max_delay = Duration::from_secs(1);
    c.store.path = store_path.to_owned();
    c.store.cache_capacity_bytes = 8 << 20;
    c.api.listen = "127.0.0.1:0".into();
    c.api.tokens = vec![API_TOKEN.into()];
    c.delivery.retry_schedule = vec![Duration::from_millis(500), Duration::from_secs(1)];
    c.delivery.defer_delay = Duration::from_millis(500);
    c.delivery.timeout = Duration::from_secs(5);
    c.delivery.shutdown_grace = Duration::from_secs(5);
    c.delivery.allowed_cidrs = vec![
        "127.0.0.0/8".parse().expect("cidr"),
        "::1/128".parse().expect("cidr"),
    ];
    c.delivery.only_allowed_cidrs = true;
    c.secrets.key = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE=".into();
    c
}

/// A subscription of `org` to `events` at `url`, with a fresh secret.
pub fn new_subscription(org: &str, url: &str, events: &[&str]) -> Subscription {
    let events = events.iter().map(|e| (*e).to_owned()).collect();
    Subscription::new(
        org,
        url,
        "test",
        events,
        Secret::generate().expect("rng"),
        now_ms(),
    )
}

/// One hookwire (engine and API, assembled by [`App`]), its store and its namespace.
#[derive(Debug)]
pub struct Harness {
    /// The configuration hookwire runs with.
    pub config: Config,
    /// The store hookwire reads and writes (shared in-process, open across restarts).
    pub store: Store,
    /// A broker connection for inspection.
    pub broker: Broker,
    /// A producer into the namespace.
    pub producer: Producer,
    running: Option<Running>,
    ready: Arc<AtomicBool>,
    api_addr: std::net::SocketAddr,
    ops_addr: Option<std::net::SocketAddr>,
    _dir: tempfile::TempDir,
}

/// A running [`App`] and the means to stop it.
#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<hookwire_app::Result<()>>,
}

impl Harness {
    /// Starts hookwire with the test config, changed by `adjust`.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&unique_namespace(), dir.path());
        adjust(&mut config);
        let app = App::build(&config).await.expect("hookwire builds");
        let broker = Broker::connect().await;
        // The broker itself, even when hookwire is pointed elsewhere.
        let producer = Producer::connect(
            &amqp_url(),
            &config.amqp.namespace,
            "hookwire-test-producer",
            Catalog::builtin(),
        )
        .await
        .expect("producer connects");
        let mut harness = Self {
            config,
            store: app.store().clone(),
            broker,
            producer,
            running: None,
            ready: app.readiness(),
            api_addr: app.api_addr().expect("API address"),
            ops_addr: app.ops_addr().expect("operations address"),
            _dir: dir,
        };
        harness.run(app).await;
        harness
    }

    async fn run(&mut self, app: App) {
        self.ready = app.readiness();
        self.api_addr = app.api_addr().expect("API address");
        self.ops_addr = app.ops_addr().expect("operations address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        self.running = Some(Running { stop, task });
        self.wait_ready().await;
    }

    /// Waits until the daemon consumes.
    pub async fn wait_ready(&self) {
        let ready = self.ready.clone();
        crate::eventually(Duration::from_secs(20), "the daemon to consume", || {
            let ready = ready.clone();
            async move { ready.load(Ordering::SeqCst).then_some(()) }
        })
        .await;
    }

    /// The admin API's base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The operations port's base URL, when `api.ops_listen` is set.
    pub fn ops_url(&self) -> Option<String> {
        self.ops_addr.map(|addr| format!("http://{addr}"))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!(
                "{}/metrics",
                self.ops_url().unwrap_or_else(|| self.api_url())
            ))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("the metrics' text")
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.config.amqp.namespace
    }

    /// Every dead letter the daemon archived so far.
    pub fn dead_letters(&self) -> Vec<hookwire_store::DeadLetter> {
        self.store.all_dead_letters().expect("dead letters")
    }

    /// Waits until at least `n` dead letters are archived, then returns them all.
    pub async fn wait_dead_letters(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Vec<hookwire_store::DeadLetter> {
        crate::eventually(timeout, &format!("{n} dead letters"), || async {
            let all = self.dead_letters();
            (all.len() >= n).then_some(all)
        })
        .await
    }

    /// Waits until webhook `id` has at least `n` attempts logged, then returns them,
    /// oldest first.
    pub async fn wait_attempts(
        &self,
        id: &uuid::Uuid,
        n: usize,
        timeout: Duration,
    ) -> Vec<hookwire_store::AttemptRecord> {
        crate::eventually(timeout, &format!("{n} attempts logged"), || async {
            let query = hookwire_store::AttemptQuery {
                limit: 1000,
                ..Default::default()
            };
            let page = self.store.attempts(id, &query).expect("attempts");
            (page.items.len() >= n).then_some(page.items)
        })
        .await
    }

    /// Waits for the first dead letter, asserts its reason, and returns it.
    pub async fn wait_dead_letter(
        &self,
        reason: &str,
        timeout: Duration,
    ) -> hookwire_store::DeadLetter {
        let first = self.wait_dead_letters(1, timeout).await.remove(0);
        assert_eq!(first.reason, reason, "{first:?}");
        first
    }

    /// Adds a subscription to the store.
    pub fn subscribe(&self, sub: &Subscription) {
        self.store
            .apply(Change::Upsert(sub.clone()))
            .expect("apply");
    }

    /// Adds a webhook of `acme` on `report_created` delivering to `url`: the subscriber
    /// most tests need.
    pub fn subscribe_acme(&self, url: &str) -> Subscription {
        self.subscribe_acme_with(url, |_| {})
    }

    /// Adds a webhook of `acme` on `report_created` delivering to `url`, changed by
    /// `adjust` (its concurrency, its rate, …) before it is stored.
    pub fn subscribe_acme_with(
        &self,
        url: &str,
        adjust: impl FnOnce(&mut Subscription),
    ) -> Subscription {
        let mut sub = new_subscription("acme", url, &["report_created"]);
        adjust(&mut sub);
        self.subscribe(&sub);
        sub
    }

    /// Publishes `n` `report_created` events of `org`, `evt-{org}-0` to `evt-{org}-{n-1}`.
    pub async fn publish_reports(&self, org: &str, n: usize) {
        for i in 0..n {
            self.publish(
                org,
                "report_created",
                &format!("evt-{org}-{i}"),
                "report_run_url",
                "https://mode.test/r",
            )
            .await;
        }
    }

    /// Publishes the `acme` `report_created` event `id` whose `report_run_url` is `url`.
    pub async fn publish_report(&self, id: &str, url: &str) {
        self.publish("acme", "report_created", id, "report_run_url", url)
            .await;
    }

    /// Publishes `body` to the events exchange as `acme`'s `report_created` message `id`,
    /// as it is: past the producer library's checks (its size limit, its shape), as a
    /// producer with other limits, or a broken one, would send it.
    pub async fn publish_raw_report(&self, id: &str, body: &[u8]) {
        let mut headers = lapin::types::FieldTable::default();
        headers.insert(
            "org".into(),
            lapin::types::AMQPValue::LongString("acme".into()),
        );
        let properties = lapin::BasicProperties::default()
            .with_message_id(id.into())
            .with_headers(headers);
        self.broker
            .publish_raw(self.namespace(), "report_created", body, properties)
            .await;
    }

    /// Publishes a `report_created` message `no-org` without an organization, which
    /// hookwire dead-letters as `missing_org`, for the operators.
    pub async fn publish_orgless(&self) {
        let properties = lapin::BasicProperties::default().with_message_id("no-org".into());
        self.broker
            .publish_raw(
                self.namespace(),
                "report_created",
                br#"{"event":"report_created"}"#,
                properties,
            )
            .await;
    }

    /// Publishes an event with the Rust producer.
    pub async fn publish(&self, org: &str, event_type: &str, id: &str, field: &str, value: &str) {
        let mut data = serde_json::Map::new();
        data.insert(
            field.to_owned(),
            serde_json::Value::String(value.to_owned()),
        );
        let event = hookwire_amqp::OutgoingEvent {
            org: org.into(),
            event_type: event_type.into(),
            id: id.into(),
            data,
        };
        self.producer
            .publish(&event)
            .await
            .expect("publish confirmed");
    }

    /// Stops hookwire gracefully (engine and API) and returns its result.
    pub async fn stop_daemon(&mut self) -> hookwire_app::Result<()> {
        match self.running.take() {
            Some(Running { stop, task }) => {
                let _ = stop.send(());
                task.await.expect("hookwire's task")
            }
            None => Ok(()),
        }
    }

    /// Starts hookwire again after [`Harness::stop_daemon`], on the same store, with
    /// `config` as it is now; the API may listen on another port.
    pub async fn restart_daemon(&mut self) {
        let app = App::with_store(&self.config, self.store.clone())
            .await
            .expect("hookwire builds");
        self.run(app).await;
    }

    /// Stops the daemon and deletes the namespace.
    pub async fn finish(mut self) {
        self.stop_daemon().await.expect("hookwire stops cleanly");
        let channel = self
            .broker
            .connection()
            .create_channel()
            .await
            .expect("channel");
        Topology::of_config(&self.config)
            .expect("schedule")
            .delete(&channel)
            .await
            .expect("namespace deleted");
    }
}
