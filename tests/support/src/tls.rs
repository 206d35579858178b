//! HTTPS on loopback: a test CA, made fresh for each test, that signs a server
//! certificate for `localhost` and `127.0.0.1`, and a [`Receiver`] that serves it.
//!
//! Nothing on the machine trusts the CA; a test hands it to hookwire through
//! `delivery.ca_file` ([`TestCa::pem_file`]) or a webhook's CA bundle, or leaves it out to
//! see the handshake fail. A CA also signs client certificates
//! ([`TestCa::client_cert`]) for a receiver that requires one
//! ([`Receiver::https_requiring_client_cert`]).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::Receiver;
use crate::receiver::{Recorded, Reply};

/// The names the served certificate covers: [`Receiver::url`] uses `localhost`.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A self-signed CA that exists only for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A fresh CA with a P-256 key.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "hookwire test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        Self { issuer }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate in a PEM file, for `delivery.ca_file`; it is deleted when the
    /// returned handle drops.
    pub fn pem_file(&self) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .prefix("hookwire-test-ca-")
            .suffix(".pem")
            .tempfile()
            .expect("temp file");
        std::fs::write(file.path(), self.pem()).expect("write the CA file");
        file
    }

    /// A server certificate for `names` (DNS names or IP literals) signed by this CA, and
    /// its key.
    pub fn server_cert(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let common_name = names.first().map_or("server", String::as_str).to_owned();
        let (cert, key) = self.issue(names, &common_name, ExtendedKeyUsagePurpose::ServerAuth);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    /// [`TestCa::server_cert`], both PEM, as files for a server that reads PEM.
    pub fn server_cert_pem(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let common_name = names.first().map_or("server", String::as_str).to_owned();
        let (cert, key) = self.issue(names, &common_name, ExtendedKeyUsagePurpose::ServerAuth);
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate for `name` (its common name) signed by this CA, and its key:
    /// both PEM, as a webhook's `client_certificate` and `client_key`.
    pub fn client_cert(&self, name: &str) -> (String, String) {
        let (cert, key) = self.issue(Vec::new(), name, ExtendedKeyUsagePurpose::ClientAuth);
        (cert.pem(), key.serialize_pem())
    }

    /// An end-entity certificate for `names` (subject alternative names) and
    /// `common_name`, for `usage`, signed by this CA, with its fresh P-256 key.
    fn issue(
        &self,
        names: Vec<String>,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> (rcgen::Certificate, KeyPair) {
        let mut params = CertificateParams::new(names).expect("certificate names");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("certificate key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (cert, key)
    }

    /// A rustls server config presenting a certificate for [`SERVER_NAMES`], speaking
    /// HTTP/1.1 only (the receiver is an HTTP/1.1 server).
    pub fn server_config(&self) -> ServerConfig {
        self.server_config_with(None)
    }

    /// [`TestCa::server_config`], requiring a client certificate that `clients` signed
    /// when `clients` is given.
    pub fn server_config_with(&self, clients: Option<&TestCa>) -> ServerConfig {
        let (cert, key) = self.server_cert(&SERVER_NAMES);
        // aws-lc-rs explicitly: it is the provider reqwest already builds, and naming it
        // does not depend on which providers feature unification happens to enable.
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = match clients {
            None => builder.with_no_client_auth(),
            Some(clients) => {
                let mut roots = RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(clients.pem().as_bytes()).expect("CA PEM"))
                    .expect("client CA");
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("client certificate verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(vec![cert], key)
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl Receiver {
    /// An HTTPS receiver with a certificate signed by `ca`, at
    /// `https://localhost:PORT/hook`, answering 200 to everything.
    pub async fn https_ok(ca: &TestCa) -> Self {
        Self::https(ca, |_, _| Reply::status(200)).await
    }

    /// An HTTPS receiver with a certificate signed by `ca`, whose answer to the `n`th
    /// request (from 0) is `respond(n, request)`. A client that rejects the certificate is
    /// counted in [`Receiver::accepts`] but leaves no request.
    pub async fn https(
        ca: &TestCa,
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let acceptor = TlsAcceptor::from(Arc::new(ca.server_config()));
        Self::serve(listener, Arc::new(respond), Some(acceptor), None)
    }

    /// An HTTPS receiver like [`Receiver::https_ok`] that requires a client certificate
    /// signed by `clients`: a client without one, or with another, fails the handshake,
    /// counted in [`Receiver::accepts`] but leaving no request.
    pub async fn https_requiring_client_cert(ca: &TestCa, clients: &TestCa) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let acceptor = TlsAcceptor::from(Arc::new(ca.server_config_with(Some(clients))));
        let respond = |_: usize, _: &Recorded| Reply::status(200);
        Self::serve(listener, Arc::new(respond), Some(acceptor), None)
    }
}
