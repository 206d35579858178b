//! hookwire-app: the composition root. One configuration in, one process out: the store
//! and its writer, the delivery engine, the admin API and the metrics recorder, wired
//! together once, for `hookwire serve` and for the test harness alike
//! (docs/architecture.md).

mod error;
mod node;
mod outbound;
mod replication;
mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_amqp::{Names, Replayer, StreamBounds};
use hookwire_api::access::AccessTokenKeys;
use hookwire_api::{ApiSettings, ApiState, Circuits, Listeners, OperatorTokens};
use hookwire_consumer::attempt_log::{AttemptLog, Retention};
use hookwire_consumer::payloads::PayloadArchive;
use hookwire_consumer::{
    AmqpSettings, CircuitLimits, Daemon, EndpointLimits, Endpoints, Engine, EngineParts,
    EngineSettings, SettledJournal,
};
use hookwire_core::config::CatalogConfig;
use hookwire_core::{Catalog, Config};
use hookwire_store::{Store, Writer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// The git commit this build comes from (`build.rs`), "unknown" outside a checkout.
pub const COMMIT: &str = env!("HOOKWIRE_COMMIT");
/// The version and commit, as `hookwire --version` prints them.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HOOKWIRE_COMMIT"),
    ")"
);
pub use node::node_id;
pub use outbound::deliverer;

use outbound::spans;

use replication::StreamSettings;

/// hookwire, assembled and ready to run: nothing consumes or answers until [`App::run`].
#[derive(Debug)]
pub struct App {
    store: Store,
    writer: Writer,
    daemon: Daemon,
    api: ApiState,
    listeners: Listeners,
    metrics: PrometheusHandle,
    node: String,
    /// The changes stream, when the store is replicated.
    changes: Option<StreamSettings>,
    /// How long event bodies are kept (the payloads stream's `x-max-age`).
    payload_bounds: StreamBounds,
    /// How long attempts are kept (the attempts stream's `x-max-age`), and how many.
    attempt_retention: replication::AttemptRetention,
}

impl App {
    /// Validates `config`, opens the store it names and assembles everything else.
    pub async fn build(config: &Config) -> Result<Self> {
        config
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        let store = open_store(config)?;
        Self::with_store(config, store).await
    }

    /// Assembles everything around a store that is already open, so a process can stop
    /// and start hookwire again on one store (sled allows one open per directory).
    pub async fn with_store(config: &Config, store: Store) -> Result<Self> {
        // First: the writers spawned below record from their first moment (the payload
        // archive's first prune sets its gauges at once).
        let metrics = metrics_recorder()?;
        let catalog = catalog(&config.catalog)?;
        let broker_tls = hookwire_amqp::BrokerTls::from_config(&config.amqp)
            .map_err(|e| Error::Config(e.to_string()))?;
        let node = node_id(config)?;
        let connection_name = format!("{}@{node}", config.amqp.connection_name);
        let secrets_key = config
            .secrets_key()
            .map_err(|e| Error::Config(e.to_string()))?;
        let previous_keys = config
            .previous_secrets_keys()
            .map_err(|e| Error::Config(e.to_string()))?;
        let changes = config
            .replication
            .enabled
            .then(|| -> Result<StreamSettings> {
                Ok(StreamSettings {
                    urls: config.amqp.broker_urls(),
                    tls: broker_tls.clone(),
                    connection_name: connection_name.clone(),
                    topology: hookwire_amqp::Topology::of_config(config)
                        .map_err(|e| Error::Config(e.to_string()))?,
                    confirm_timeout: config.amqp.confirm_timeout,
                    reconnect_max_delay: config
                        .amqp
                        .reconnect_max_delay
                        .max(Duration::from_secs(1)),
                    health_interval: config.replication.health_interval,
                    node: node.clone(),
                    key: hookwire_amqp::envelope::StreamKey::derive(&secrets_key)
                        .with_previous(&previous_keys),
                })
            })
            .transpose()?;
        let writer = match &changes {
            None => Writer::spawn(store.clone()),
            // A write answers within the API's request timeout, applied or not.
            Some(settings) => Writer::replicated_validated(
                store.clone(),
                &node,
                replication::changelog(settings.clone(), replication::Which::Changes),
                config
                    .api
                    .request_timeout
                    .saturating_sub(Duration::from_secs(1)),
                Some(replication::validator(
                    config.target_policy(),
                    catalog.clone(),
                )),
            )
            .map_err(|source| Error::Store {
                path: config.store.path.clone(),
                source,
            })?,
        };
        let payload_bounds = StreamBounds {
            max_age: config.store.payload_retention,
            max_bytes: config.store.payload_max_bytes,
        };
        let payload_stream = changes.as_ref().map(|settings| {
            replication::changelog(
                settings.clone(),
                replication::Which::Payloads(payload_bounds),
            )
        });
        let attempt_retention = replication::AttemptRetention {
            max_age: config.store.attempt_retention,
            per_webhook: config.store.attempts_per_webhook,
            max_bytes: config.replication.attempts_max_bytes,
        };
        let attempt_stream = changes.as_ref().map(|settings| {
            replication::changelog(
                settings.clone(),
                replication::Which::Attempts(attempt_retention.stream_bounds()),
            )
        });
        let (daemon, endpoints) = daemon(
            config,
            &connection_name,
            broker_tls.clone(),
            store.clone(),
            writer.clone(),
            catalog.clone(),
            Streams {
                payloads: payload_stream,
                attempts: attempt_stream,
            },
        )?;
        let access_keys = AccessTokenKeys::derive(
            &secrets_key,
            &previous_keys,
            &config.amqp.namespace,
            config.api.access_token_max_ttl,
        );
        let api = ApiState {
            config: Arc::new(ApiSettings {
                tokens: OperatorTokens::new(config.api.tokens.clone()),
                org_tokens: config.api.org_tokens.clone(),
                access_keys,
                access_token_max_ttl: config.api.access_token_max_ttl,
                console_frame_ancestors: config.api.console_frame_ancestors.clone(),
                max_body_bytes: config.api.max_body_bytes,
                rotation_grace: config.secrets.rotation_grace,
                policy: config.target_policy(),
                retry_schedule: config
                    .retry_schedule()
                    .map_err(|e| Error::Config(e.to_string()))?,
                max_age: config.delivery.max_age,
                header_read_timeout: config.api.header_read_timeout,
                request_timeout: config.api.request_timeout,
                max_connections: config.api.max_connections,
                ops_listener: config.api.ops_listen.is_some(),
                max_webhooks_per_org: config.api.max_webhooks_per_org,
                node: node.clone(),
            }),
            store: store.clone(),
            writer: writer.clone(),
            catalog: Arc::new(catalog),
            deliverer: deliverer(config)?,
            resend_budget: Arc::new(hookwire_api::resend::ResendBudget::from_rates(
                config.api.resend_per_webhook_per_sec,
                config.api.resend_per_org_per_sec,
            )),
            test_sends: Arc::new(tokio::sync::Semaphore::new(config.api.max_test_sends)),
            exports: Arc::new(tokio::sync::Semaphore::new(1)),
            broker_ready: daemon.readiness(),
            replayer: Arc::new(Replayer::with_brokers(
                hookwire_amqp::Brokers::new(config.amqp.broker_urls()).with_tls(broker_tls),
                &connection_name,
                &config.amqp.namespace,
                config.amqp.confirm_timeout,
            )),
            circuits: Some(Arc::new(EngineCircuits(endpoints))),
            metrics: Some(metrics.clone()),
        };
        let listener = bind("api.listen", &config.api.listen).await?;
        let ops_listener = match &config.api.ops_listen {
            Some(addr) => Some(bind("api.ops_listen", addr).await?),
            None => None,
        };
        Ok(Self {
            store,
            writer,
            daemon,
            api,
            listeners: Listeners {
                api: listener,
                ops: ops_listener,
            },
            metrics,
            node,
            changes,
            payload_bounds,
            attempt_retention,
        })
    }

    /// This node's id (`node.id`, or the one kept in the store directory).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The store the engine reads and the API writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// True while the engine consumes; `/readyz` reads the same flag.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.daemon.readiness()
    }

    /// The operators' tokens (`api.tokens`) the API checks: replacing them takes effect
    /// at the next request, as `serve` does on SIGHUP.
    pub fn operator_tokens(&self) -> OperatorTokens {
        self.api.config.tokens.clone()
    }

    /// Where the admin API listens (`api.listen`, with its port resolved).
    pub fn api_addr(&self) -> Result<SocketAddr> {
        self.listeners
            .api
            .local_addr()
            .map_err(|e| Error::Internal(format!("the API listener has no address: {e}")))
    }

    /// Where the operations port listens (`api.ops_listen`, with its port resolved).
    pub fn ops_addr(&self) -> Result<Option<SocketAddr>> {
        self.listeners
            .ops
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(|e| Error::Internal(format!("the operations listener has no address: {e}")))
    }

    /// Runs the engine and the API until `shutdown` completes or the engine ends on its
    /// own, then takes the API down and flushes the store. With replication, the changes
    /// stream is read first, and the engine consumes only once this node has caught up
    /// with it: a node rebuilding its store must not take deliveries for webhooks it does
    /// not hold yet.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Self {
            store,
            writer,
            daemon,
            api,
            listeners,
            metrics,
            node,
            changes,
            payload_bounds,
            attempt_retention,
        } = self;
        telemetry::node(&node);
        if changes.is_some() {
            telemetry::register_stream_refusals();
        }
        let upkeep = tokio::spawn(hookwire_api::meta::metrics_upkeep(metrics));
        let stop = CancellationToken::new();
        let api = tokio::spawn(hookwire_api::serve(
            listeners,
            api,
            stop.clone().cancelled_owned(),
        ));
        let shutting_down = CancellationToken::new();
        let watcher = {
            let (shutting_down, api_stop) = (shutting_down.clone(), stop.clone());
            tokio::spawn(async move {
                shutdown.await;
                shutting_down.cancel();
                api_stop.cancel();
            })
        };
        let reading_stop = CancellationToken::new();
        let payload_reader = changes.clone().map(|settings| {
            tokio::spawn(replication::read_payloads(
                settings,
                payload_bounds,
                store.clone(),
                writer.clone(),
                reading_stop.clone(),
            ))
        });
        let attempt_reader = changes.clone().map(|settings| {
            tokio::spawn(replication::read_attempts(
                settings,
                attempt_retention,
                store.clone(),
                writer.clone(),
                reading_stop.clone(),
            ))
        });
        let changes_health = changes.as_ref().map(|settings| settings.health_interval);
        let reader = changes.map(|settings| {
            tokio::spawn(replication::read_changes(
                settings,
                store.clone(),
                writer.clone(),
                reading_stop.clone(),
            ))
        });
        let caught_up = reader.is_none() || replication::catch_up(&writer, &shutting_down).await;
        let sharing_stop = CancellationToken::new();
        let sharing = changes_health.filter(|_| caught_up).map(|every| {
            store.track_health_transitions();
            tokio::spawn(replication::share_health(
                store.clone(),
                writer.clone(),
                every,
                sharing_stop.clone(),
            ))
        });
        // On a worker, not on the caller's thread (which may block on `main`): delivery
        // hand-offs then stay among the runtime's workers.
        let engine = if caught_up {
            tokio::spawn(daemon.run(shutting_down.clone().cancelled_owned()))
                .await
                .map_err(|e| Error::Internal(format!("the engine task failed: {e}")))
        } else {
            Ok(Ok(()))
        };
        watcher.abort();
        stop.cancel();
        // The engine's last writes (dead letters archived at shutdown) are applied by now;
        // its last health transitions go out while the reader still applies them.
        sharing_stop.cancel();
        if let Some(sharing) = sharing {
            let _ = sharing.await;
        }
        reading_stop.cancel();
        if let Some(reader) = reader {
            reader
                .await
                .map_err(|e| Error::Internal(format!("the changes reader failed: {e}")))?;
        }
        if let Some(reader) = payload_reader {
            reader
                .await
                .map_err(|e| Error::Internal(format!("the payloads reader failed: {e}")))?;
        }
        if let Some(reader) = attempt_reader {
            reader
                .await
                .map_err(|e| Error::Internal(format!("the attempts reader failed: {e}")))?;
        }
        let served = api
            .await
            .map_err(|e| Error::Internal(format!("the API task failed: {e}")))?;
        upkeep.abort();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| Error::Internal(format!("the flush task failed: {e}")))?
            .map_err(Error::Flush)?;
        engine??;
        served.map_err(Error::Api)
    }
}

/// Opens the store `config` names with `secrets.key` and `secrets.previous_keys`; fails
/// when the store was written under another key.
pub fn open_store(config: &Config) -> Result<Store> {
    let key = config
        .secrets_key()
        .map_err(|e| Error::Config(e.to_string()))?;
    let previous = config
        .previous_secrets_keys()
        .map_err(|e| Error::Config(e.to_string()))?;
    let path = &config.store.path;
    Store::open_with_keys(path, config.store.cache_capacity_bytes, &key, &previous).map_err(
        |source| Error::Store {
            path: path.clone(),
            source,
        },
    )
}

/// The embedded catalog, or the one `catalog.path` names.
pub fn catalog(section: &CatalogConfig) -> Result<Catalog> {
    let Some(path) = &section.path else {
        return Ok(Catalog::builtin());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Catalog(format!("cannot read {}: {e}", path.display())))?;
    Catalog::from_toml(&text).map_err(|e| Error::Catalog(e.to_string()))
}

/// The delivery engine's circuits, as the API shows them.
#[derive(Debug)]
struct EngineCircuits(Endpoints);

impl Circuits for EngineCircuits {
    fn circuit(&self, id: &uuid::Uuid) -> Option<hookwire_api::webhooks::Circuit> {
        let now = std::time::Instant::now();
        let snapshot = self.0.snapshot(id, now)?;
        Some(hookwire_api::webhooks::Circuit {
            state: snapshot.state.as_str().to_owned(),
            failure_rate: snapshot.failure_rate,
            open_until_ms: snapshot
                .open_for
                .map(|rest| hookwire_core::now_ms() + rest.as_millis() as u64),
            concurrency_limit: Some(snapshot.concurrency_limit as u64),
            in_flight: Some(snapshot.in_flight as u64),
        })
    }
}

/// The streams the engine's batching writers publish to, when the store is replicated.
struct Streams {
    payloads: Option<Arc<dyn hookwire_store::Changelog>>,
    attempts: Option<Arc<dyn hookwire_store::Changelog>>,
}

/// The daemon, and its engine's circuits for the API.
fn daemon(
    config: &Config,
    connection_name: &str,
    broker_tls: Option<hookwire_amqp::BrokerTls>,
    store: Store,
    writer: Writer,
    catalog: Catalog,
    streams: Streams,
) -> Result<(Daemon, Endpoints)> {
    let d = &config.delivery;
    let rules = d.rules().map_err(|e| Error::Config(e.to_string()))?;
    let attempt_log = AttemptLog::spawn(
        store.clone(),
        Retention {
            max_age: config.store.attempt_retention,
            per_webhook: config.store.attempts_per_webhook,
            dead_letter_max_age: config.store.dead_letter_retention,
            dead_letters_per_org: config.store.dead_letters_per_org,
        },
        streams.attempts,
    );
    let payloads = PayloadArchive::spawn(
        store.clone(),
        hookwire_store::PayloadLimits {
            retention: config.store.payload_retention,
            max_bytes: config.store.payload_max_bytes,
            max_bytes_per_org: config.store.payload_max_bytes_per_org,
        },
        streams.payloads,
    );
    let cool_off = d.circuit_cool_off;
    // Every delivery an open circuit deferred comes back within this tier (or sooner).
    let prefer_attempted_for = rules
        .plan
        .tier_covering(cool_off)
        .min(d.circuit_max_deferral);
    let journal = SettledJournal::open(&config.store.path).map_err(|source| Error::Journal {
        path: config.store.path.clone(),
        source,
    })?;
    let engine = Engine::new(EngineParts {
        store,
        writer,
        attempt_log,
        journal,
        payloads,
        catalog,
        deliverer: deliverer(config)?,
        rules,
        names: Names::new(&config.amqp.namespace),
        replication: config.amqp.replication(),
        spans: spans(config)?,
        settings: EngineSettings {
            max_event_bytes: d.max_event_bytes,
            dead_letter_body_max_bytes: config.store.dead_letter_body_max_bytes,
            attempts_replicated: config.replication.enabled,
            inline_fanout_max: d.inline_fanout_max,
            concurrency: d.concurrency,
            limits: EndpointLimits {
                per_endpoint_concurrency: d.per_endpoint_concurrency,
                adaptive: d.adaptive_concurrency,
                max_slot_wait: d.max_slot_wait,
                max_short_wait: d.defer_delay.max(d.max_slot_wait),
                circuit: CircuitLimits {
                    min_failures: d.circuit_failure_threshold,
                    failure_rate: d.circuit_failure_rate,
                    window: d.circuit_window,
                    cool_off,
                    half_open_trials: d.circuit_half_open_trials,
                    prefer_attempted_for,
                    max_deferral: d.circuit_max_deferral,
                },
                // Deliveries held past the deferral bound keep their messages with no end
                // of their own: at most half the prefetch window, so the other half keeps
                // flowing. Short waits end within max_short_wait and are not counted.
                max_held: usize::from(config.prefetch() / 2).max(1),
            },
        },
    });
    let endpoints = engine.endpoints().clone();
    let daemon = Daemon::new(
        engine,
        AmqpSettings {
            urls: config.amqp.broker_urls(),
            tls: broker_tls,
            connection_name: connection_name.to_owned(),
            prefetch: config.prefetch(),
            reconnect_max_delay: config.amqp.reconnect_max_delay.max(Duration::from_secs(1)),
            confirm_timeout: config.amqp.confirm_timeout,
            open_timeout: config.amqp.open_timeout,
            shutdown_grace: d.shutdown_grace,
        },
    );
    Ok((daemon, endpoints))
}

/// The process's metrics recorder. The `metrics` facade has one global recorder, so every
/// [`App`] of a process (tests start many) shares the first one installed.
fn metrics_recorder() -> Result<PrometheusHandle> {
    static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut recorder = RECORDER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = recorder.as_ref() {
        return Ok(handle.clone());
    }
    let handle = hookwire_api::meta::install_metrics_recorder().map_err(Error::Metrics)?;
    *recorder = Some(handle.clone());
    Ok(handle)
}

/// Binds the listener of config key `key`.
async fn bind(key: &'static str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            key,
            addr: addr.to_owned(),
            source,
        })
}
