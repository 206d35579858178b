//! What `serve` sends out besides the broker: deliveries and test events over HTTP, and
//! spans over OTLP.

use hookwire_consumer::spans::Spans;
use hookwire_core::Config;
use hookwire_http::otlp::Exporter;
use hookwire_http::{Deliverer, DelivererConfig, Proxy, ProxyCredentials};

use crate::{Error, Result};

/// The HTTP client of deliveries and test events.
pub fn deliverer(config: &Config) -> Result<Deliverer> {
    let d = &config.delivery;
    let ca_pem = match &d.ca_file {
        None => None,
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| Error::Config(format!("delivery.ca_file {}: {e}", path.display())))?,
        ),
    };
    let core_error = |e: hookwire_core::Error| Error::Config(e.to_string());
    let proxy = match &d.proxy {
        None => None,
        Some(proxy) => Some(Proxy {
            address: proxy.address().map_err(core_error)?,
            credentials: match (&proxy.username, proxy.password().map_err(core_error)?) {
                (Some(username), Some(password)) => Some(ProxyCredentials {
                    username: username.clone(),
                    password,
                }),
                _ => None,
            },
        }),
    };
    Ok(Deliverer::new(DelivererConfig {
        policy: config.target_policy(),
        timeout: d.timeout,
        ca_pem,
        retry_client_errors: d.retry_client_errors,
        proxy,
    })?)
}

/// Where the engine's spans go: the OTLP exporter when `tracing.otlp_endpoint` is set,
/// nowhere (and none built) otherwise.
pub(crate) fn spans(config: &Config) -> Result<Spans> {
    let Some(url) = config.tracing.traces_url() else {
        return Ok(Spans::default());
    };
    let exporter = Exporter::start(&url, &config.tracing.service_name)?;
    tracing::info!(%url, "Exporting spans over OTLP/HTTP.");
    Ok(Spans::new(Some(exporter)))
}
