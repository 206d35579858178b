//! A daemon running in-process: a fresh store and namespace, seeded subscriptions, and a
//! shutdown the test controls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hookwire_core::{Catalog, Config, Secret, Subscription, now_ms};
use hookwire_amqp::{Producer, Topology};
use hookwire_store::{Change, Store, Writer};
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
    c.amqp.reconnect_max_delay_secs = 1;
    c.store.path = store_path.to_owned();
    c.store.cache_capacity_bytes = 8 << 20;
    c.api.listen = "127.0.0.1:0".into();
    c.api.tokens = vec![API_TOKEN.into()];
    c.delivery.retry_schedule = vec![Duration::from_millis(500), Duration::from_secs(1)];
    c.delivery.defer_delay = Duration::from_millis(500);
    c.delivery.timeout_secs = 5;
    c.delivery.shutdown_grace_secs = 5;
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

/// The process-wide metrics recorder, installed once for every harness of a test binary.
fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| hookwire_api::meta::install_metrics_recorder().expect("recorder installs"))
        .clone()
}

/// One daemon, its store and its namespace.
#[derive(Debug)]
pub struct Harness {
    /// The configuration the daemon runs with.
    pub config: Config,
    /// The store the daemon reads (shared in-process).
    pub store: Store,
    /// The group-commit writer the daemon and the API share.
    pub writer: Writer,
    /// A broker connection for inspection.
    pub broker: Broker,
    /// A producer into the namespace.
    pub producer: Producer,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<hookwire_consumer::Result<()>>>,
    ready: Arc<AtomicBool>,
    api_addr: std::net::SocketAddr,
    api_task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts a daemon with the test config, changed by `adjust`.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&unique_namespace(), dir.path());
        adjust(&mut config);
        config.validate().expect("test config is valid");
        let store = Store::open(
            &config.store.path,
            config.store.cache_capacity_bytes,
            &config.secrets_key().expect("key"),
        )
        .expect("store opens");
        let broker = Broker::connect().await;
        // The broker itself, even when the daemon is pointed elsewhere.
        let producer = Producer::connect(
            &amqp_url(),
            &config.amqp.namespace,
            "hookwire-test-producer",
            Catalog::builtin(),
        )
        .await
        .expect("producer connects");
        let writer = Writer::spawn(store.clone());
        let ready = Arc::new(AtomicBool::new(false));
        let api_state = hookwire_api::ApiState::from_config(
            &config,
            store.clone(),
            writer.clone(),
            Catalog::builtin(),
            ready.clone(),
            Some(metrics_handle()),
        )
        .expect("API state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the API");
        let api_addr = listener.local_addr().expect("API address");
        let api_task = tokio::spawn(hookwire_api::serve(
            listener,
            api_state,
            std::future::pending(),
        ));
        let mut harness = Self {
            config,
            writer,
            store,
            broker,
            producer,
            stop: None,
            task: None,
            ready,
            api_addr,
            api_task,
            _dir: dir,
        };
        harness.spawn_daemon().await;
        harness
    }

    async fn spawn_daemon(&mut self) {
        let daemon = hookwire_consumer::daemon_from_config(
            &self.config,
            self.store.clone(),
            self.writer.clone(),
            Catalog::builtin(),
        )
        .expect("daemon builds")
        .with_readiness(self.ready.clone());
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(daemon.run(async {
            let _ = rx.await;
        })));
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

    /// Adds a subscription to the store.
    pub fn subscribe(&self, sub: &Subscription) {
        self.store
            .apply(Change::Upsert(sub.clone()))
            .expect("apply");
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

    /// Stops the daemon gracefully and returns its result.
    pub async fn stop_daemon(&mut self) -> hookwire_consumer::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("daemon task"),
            None => Ok(()),
        }
    }

    /// Starts the daemon again after [`Harness::stop_daemon`].
    pub async fn restart_daemon(&mut self) {
        self.spawn_daemon().await;
    }

    /// Stops the daemon and deletes the namespace.
    pub async fn finish(mut self) {
        self.stop_daemon().await.expect("daemon stops cleanly");
        self.api_task.abort();
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
