//! hookwire-consumer: the delivery engine.
//!
//! - [`Daemon`]: keeps a broker session alive and consumes the events and deliveries queues.
//! - [`Engine`]: per message, decode, fan out, attempt, then retry through a tier,
//!   dead-letter, or finish, acking only once the outcome is durable.
//! - [`endpoints`]: per-webhook concurrency caps, rate limits and circuit breakers.
//! - [`http`]: one signed attempt under the target policy.

mod acks;
pub mod attempt_log;
mod daemon;
mod dead;
pub mod endpoints;
mod engine;
mod error;
pub mod http;
mod telemetry;

pub use daemon::{AmqpSettings, Daemon};
pub use endpoints::EndpointLimits;
pub use engine::{Engine, EngineParts, EngineSettings};
pub use error::{Error, Result};
pub use http::{Deliverer, DelivererConfig};

use std::time::Duration;

use hookwire_amqp::Names;
use hookwire_core::{Catalog, Config};
use hookwire_store::{Store, Writer};

use crate::attempt_log::{AttemptLog, Retention};

/// The HTTP side of deliveries (and of the API's test events), from the configuration.
pub fn deliverer_from_config(config: &Config) -> Result<Deliverer> {
    let d = &config.delivery;
    let ca_pem =
        if d.ca_file.as_os_str().is_empty() {
            None
        } else {
            Some(std::fs::read(&d.ca_file).map_err(|e| {
                Error::Config(format!("delivery.ca_file {}: {e}", d.ca_file.display()))
            })?)
        };
    Deliverer::new(DelivererConfig {
        policy: config.target_policy(),
        timeout: Duration::from_secs(d.timeout_secs),
        ca_pem,
        retry_client_errors: d.retry_client_errors,
    })
}

/// Assembles a daemon from a validated configuration.
pub fn daemon_from_config(
    config: &Config,
    store: Store,
    writer: Writer,
    catalog: Catalog,
) -> Result<Daemon> {
    let d = &config.delivery;
    let rules = d.rules().map_err(|e| Error::Config(e.to_string()))?;
    let deliverer = deliverer_from_config(config)?;
    let attempt_log = AttemptLog::spawn(
        store.clone(),
        Retention {
            max_age: Duration::from_secs(config.store.attempt_retention_secs),
            per_webhook: config.store.attempts_per_webhook,
            dead_letter_max_age: Duration::from_secs(config.store.dead_letter_retention_secs),
            dead_letters_per_org: config.store.dead_letters_per_org,
        },
    );
    let engine = Engine::new(EngineParts {
        store,
        writer,
        attempt_log,
        catalog,
        deliverer,
        rules,
        names: Names::new(&config.amqp.namespace),
        settings: EngineSettings {
            max_event_bytes: d.max_event_bytes,
            inline_fanout_max: d.inline_fanout_max,
            concurrency: d.concurrency,
            limits: EndpointLimits {
                per_endpoint_concurrency: d.per_endpoint_concurrency,
                circuit_failure_threshold: d.circuit_failure_threshold,
                circuit_cool_off: Duration::from_secs(d.circuit_cool_off_secs),
            },
        },
    });
    Ok(Daemon::new(
        engine,
        AmqpSettings {
            url: config.amqp.url.clone(),
            connection_name: config.amqp.connection_name.clone(),
            prefetch: config.prefetch(),
            reconnect_max_delay: Duration::from_secs(config.amqp.reconnect_max_delay_secs.max(1)),
            confirm_timeout: Duration::from_secs(config.amqp.confirm_timeout_secs),
            open_timeout: Duration::from_secs(config.amqp.open_timeout_secs),
            shutdown_grace: Duration::from_secs(d.shutdown_grace_secs),
        },
    ))
}
