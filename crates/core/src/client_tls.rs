//! A webhook's own TLS settings toward its receiver: a client certificate to present when
//! the receiver asks for one (mutual TLS), and CA certificates to trust for a receiver
//! whose certificate a private CA signed. The PEM texts are checked when they are set
//! (hookwire-http parses them), so that an attempt only uses them.

use std::fmt;

/// The most bytes of a certificate chain, a key or a CA bundle (PEM): a few certificates,
/// far from what a store row should carry.
pub const MAX_TLS_PEM_BYTES: usize = 64 * 1024;

/// What a webhook adds to the TLS handshake; both parts optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The certificate and key presented when the receiver asks for one.
    pub identity: Option<ClientIdentity>,
    /// Extra CA certificates (PEM) the receiver's certificate may chain to, besides the
    /// platform's roots and `delivery.ca_file`.
    pub ca_pem: Option<String>,
}

impl ClientTls {
    /// Whether it changes nothing: no identity and no extra CA.
    pub fn is_empty(&self) -> bool {
        self.identity.is_none() && self.ca_pem.is_none()
    }
}

/// A client certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain, PEM, the webhook's own certificate first. Not secret: the
    /// API shows what it says (subject, fingerprint, expiry).
    pub cert_pem: String,
    /// The private key, PEM: sealed at rest like the signing secret, never shown again.
    /// `None` when the webhook was read without its secrets (a listing).
    pub key: Option<ClientKey>,
}

/// A client certificate's private key (PEM). `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey(String);

impl ClientKey {
    /// Wraps a PEM private key.
    pub fn new(pem: String) -> Self {
        Self(pem)
    }

    /// The PEM text.
    pub fn pem(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let tls = ClientTls {
            identity: Some(ClientIdentity {
                cert_pem: "-----BEGIN CERTIFICATE-----".into(),
                key: Some(ClientKey::new(
                    "-----BEGIN PRIVATE KEY-----\nc2VjcmV0".into(),
                )),
            }),
            ca_pem: None,
        };
        let debug = format!("{tls:?}");
        assert!(
            !debug.contains("PRIVATE KEY") && !debug.contains("c2VjcmV0"),
            "{debug}"
        );
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!tls.is_empty() && ClientTls::default().is_empty());
    }
}
