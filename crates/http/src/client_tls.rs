//! Per-webhook TLS: a webhook's client certificate and key (mutual TLS) and its own CA
//! bundle. They are checked here when they are set (the API answers 422 with these
//! messages), described for the API without the key, and turned into the rustls
//! configuration of the webhook's attempts.

use std::sync::Arc;

use hookwire_core::client_tls::{ClientTls, MAX_TLS_PEM_BYTES};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What a certificate says, for the API: never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject's distinguished name, e.g. `CN=hookwire`.
    pub subject: String,
    /// The SHA-256 of the DER certificate, lower-case hex pairs joined by `:`.
    pub fingerprint_sha256: String,
    /// The end of its validity, in milliseconds since the epoch.
    pub not_after_ms: u64,
}

/// Checks a client certificate chain (the webhook's own certificate first) and its key:
/// both PEM, within [`MAX_TLS_PEM_BYTES`], the key matching the first certificate, which
/// has not expired at `now_ms`. Returns what the first certificate says.
pub fn check_identity(
    cert_pem: &str,
    key_pem: &str,
    now_ms: u64,
) -> Result<CertificateInfo, String> {
    let chain = certificates("client_certificate", cert_pem)?;
    if key_pem.len() > MAX_TLS_PEM_BYTES {
        return Err(format!(
            "client_key has more than {MAX_TLS_PEM_BYTES} bytes"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        format!("client_key is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")
    })?;
    let info = describe_der(&chain[0])
        .map_err(|e| format!("client_certificate's first certificate is not X.509: {e}"))?;
    if info.not_after_ms <= now_ms {
        return Err(format!(
            "client_certificate expired at {}",
            rfc3339(info.not_after_ms)
        ));
    }
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "client_key does not match client_certificate (its first certificate)".to_owned()
        }
        other => format!("client_key cannot be used: {other}"),
    })?;
    Ok(info)
}

/// Checks a CA bundle (PEM certificates, within [`MAX_TLS_PEM_BYTES`]) and describes
/// each certificate.
pub fn check_ca_bundle(pem: &str) -> Result<Vec<CertificateInfo>, String> {
    certificates("ca_certificates", pem)?
        .iter()
        .enumerate()
        .map(|(i, der)| {
            describe_der(der)
                .map_err(|e| format!("ca_certificates' certificate {} is not X.509: {e}", i + 1))
        })
        .collect()
}

/// What the first certificate of `pem` says; `None` if it cannot be read (it was checked
/// when it was set, so only a damaged record gets here).
pub fn describe(pem: &str) -> Option<CertificateInfo> {
    let first = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    describe_der(&first).ok()
}

/// What each certificate of `pem` says, skipping any that cannot be read.
pub fn describe_all(pem: &str) -> Vec<CertificateInfo> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(|c| describe_der(&c.ok()?).ok())
        .collect()
}

/// The certificates of a PEM text, at least one, and nothing secret beside them.
fn certificates(field: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if pem.len() > MAX_TLS_PEM_BYTES {
        return Err(format!("{field} has more than {MAX_TLS_PEM_BYTES} bytes"));
    }
    // Certificates are kept in the clear and a key pasted beside them would be too.
    if pem.contains("PRIVATE KEY-----") {
        return Err(format!(
            "{field} holds a private key: send only certificates here (the key goes in client_key)"
        ));
    }
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("{field} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{field} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}

fn describe_der(der: &CertificateDer<'_>) -> Result<CertificateInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let not_after = cert.validity().not_after.timestamp();
    let fingerprint = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        fingerprint_sha256: fingerprint,
        not_after_ms: u64::try_from(not_after).unwrap_or(0).saturating_mul(1000),
    })
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// aws-lc-rs, the provider of the whole delivery client.
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// What every attempt's TLS starts from: the provider, and `delivery.ca_file`'s roots
/// besides the platform's.
#[derive(Debug, Clone)]
pub(crate) struct TlsBase {
    provider: Arc<CryptoProvider>,
    extra_roots: Vec<CertificateDer<'static>>,
}

impl TlsBase {
    /// The base, with the roots of `ca_pem` (`delivery.ca_file`).
    pub(crate) fn new(ca_pem: Option<&[u8]>) -> Result<Self> {
        let ca_error = |e: &dyn std::fmt::Display| Error::Config(format!("delivery.ca_file: {e}"));
        let extra_roots = match ca_pem {
            None => Vec::new(),
            Some(pem) => {
                let roots = CertificateDer::pem_slice_iter(pem)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| ca_error(&e))?;
                if roots.is_empty() {
                    return Err(ca_error(&"no PEM certificate in the file"));
                }
                roots
            }
        };
        Ok(Self {
            provider: Arc::new(provider()),
            extra_roots,
        })
    }

    /// rustls with the platform's roots, `delivery.ca_file`'s and the webhook's CA
    /// bundle, presenting the webhook's certificate when the receiver asks for one; as
    /// reqwest's `rustls` feature sets it up otherwise.
    pub(crate) fn config(&self, tls: Option<&ClientTls>) -> Result<rustls::ClientConfig, String> {
        let mut roots = self.extra_roots.clone();
        if let Some(pem) = tls.and_then(|t| t.ca_pem.as_deref()) {
            roots.extend(certificates("ca_certificates", pem)?);
        }
        let verifier = if roots.is_empty() {
            rustls_platform_verifier::Verifier::new(self.provider.clone())
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, self.provider.clone())
        }
        .map_err(|e| e.to_string())?;
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        match tls.and_then(|t| t.identity.as_ref()) {
            None => Ok(builder.with_no_client_auth()),
            Some(identity) => {
                let key = identity
                    .key
                    .as_ref()
                    .ok_or("the client key was not read with the webhook")?;
                let chain = certificates("client_certificate", &identity.cert_pem)?;
                let key = PrivateKeyDer::from_pem_slice(key.pem().as_bytes())
                    .map_err(|e| format!("client_key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client_certificate: {e}"))
            }
        }
    }
}

/// The cache key of a webhook's TLS settings: equal settings share a client (and its
/// pooled connections), different ones never do.
pub(crate) fn settings_key(tls: &ClientTls) -> [u8; 32] {
    let mut hash = Sha256::new();
    if let Some(identity) = &tls.identity {
        hash.update(b"cert\0");
        hash.update(identity.cert_pem.as_bytes());
        hash.update(b"\0key\0");
        hash.update(identity.key.as_ref().map_or("", |k| k.pem()).as_bytes());
    }
    if let Some(ca) = &tls.ca_pem {
        hash.update(b"\0ca\0");
        hash.update(ca.as_bytes());
    }
    hash.finalize().into()
}
