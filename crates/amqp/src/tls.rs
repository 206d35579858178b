//! TLS toward `amqps://` brokers beyond the platform's defaults: a private CA instead of
//! the platform's roots, a client certificate, and the name the broker's certificate must
//! carry when it is not the URL's host.

use std::path::Path;

use hookwire_core::config::AmqpConfig;
use lapin::tcp::{RustlsConnector, RustlsConnectorConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::{Error, Result};

/// How connections to `amqps://` brokers verify the broker and present themselves. Cheap
/// to clone: the rustls configuration is shared, and so are its TLS session tickets.
#[derive(Clone)]
pub struct BrokerTls {
    connector: RustlsConnector,
    server_name: Option<String>,
}

impl std::fmt::Debug for BrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// What a [`BrokerTls`] is built from, all PEM text.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrokerTlsPem<'a> {
    /// The CA certificates the broker's certificate must chain to, instead of the
    /// platform's roots; `None`: the platform's roots.
    pub ca: Option<&'a str>,
    /// The client certificate chain (own certificate first) and its private key.
    pub client: Option<(&'a str, &'a str)>,
    /// The name the broker's certificate must carry; `None`: the URL's host.
    pub server_name: Option<&'a str>,
}

/// An [`Error::Tls`] naming `key`.
fn tls_error(key: &str, message: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{key}: {message}"))
}

fn certificates(key: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(key, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(key, "holds no PEM certificate"));
    }
    Ok(certs)
}

impl BrokerTls {
    /// The settings of `amqp.tls_*`, read from their files; `None` when none is set, for
    /// the platform's defaults. Errors name the key.
    pub fn from_config(amqp: &AmqpConfig) -> Result<Option<Self>> {
        if !amqp.has_tls_settings() {
            return Ok(None);
        }
        let read = |key: &str, path: &Option<std::path::PathBuf>| -> Result<Option<String>> {
            path.as_deref()
                .map(|p: &Path| {
                    std::fs::read_to_string(p)
                        .map_err(|e| tls_error(key, format!("cannot read {}: {e}", p.display())))
                })
                .transpose()
        };
        let ca = read("amqp.tls_ca_file", &amqp.tls_ca_file)?;
        let cert = read("amqp.tls_client_certificate", &amqp.tls_client_certificate)?;
        let key = read("amqp.tls_client_key", &amqp.tls_client_key)?;
        let client = match (&cert, &key) {
            (Some(cert), Some(key)) => Some((cert.as_str(), key.as_str())),
            (None, None) => None,
            _ => {
                return Err(tls_error(
                    "amqp.tls_client_certificate",
                    "and amqp.tls_client_key go together",
                ));
            }
        };
        Self::from_pem(BrokerTlsPem {
            ca: ca.as_deref(),
            client,
            server_name: amqp.tls_server_name.as_deref(),
        })
        .map(Some)
    }

    /// Settings from PEM text, as a producer that holds its certificates in memory has
    /// them. Errors name the `amqp.tls_*` key each part comes from.
    pub fn from_pem(pem: BrokerTlsPem<'_>) -> Result<Self> {
        let config = match pem.ca {
            // Without the platform verifier, the connector trusts exactly these roots.
            Some(ca) => RustlsConnectorConfig::default()
                .with_parsable_certificates(certificates("amqp.tls_ca_file", ca)?),
            None => RustlsConnectorConfig::new_with_platform_verifier(),
        };
        let connector = match pem.client {
            None => config.connector_with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates("amqp.tls_client_certificate", cert)?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                    tls_error(
                        "amqp.tls_client_key",
                        format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
                    )
                })?;
                config.connector_with_single_cert(chain, key)
            }
        }
        .map_err(|e| match (pem.client, pem.ca) {
            // rustls checks the key against the first certificate here.
            (Some(_), _) if e.kind() == std::io::ErrorKind::InvalidData => tls_error(
                "amqp.tls_client_key",
                format!("does not match amqp.tls_client_certificate's first certificate: {e}"),
            ),
            (_, Some(_)) => tls_error("amqp.tls_ca_file", e),
            (_, None) => Error::Tls(format!("the platform's roots: {e}")),
        })?;
        if let Some(name) = pem.server_name {
            ServerName::try_from(name)
                .map_err(|e| tls_error("amqp.tls_server_name", format!("`{name}`: {e}")))?;
        }
        Ok(Self {
            connector,
            server_name: pem.server_name.map(str::to_owned),
        })
    }

    /// The name the broker's certificate is checked against: the configured one, or the
    /// URL's `host`.
    pub(crate) fn server_name<'a>(&'a self, host: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(host)
    }

    pub(crate) fn connector(&self) -> &RustlsConnector {
        &self.connector
    }
}
