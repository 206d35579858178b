//! HTTPS on loopback: a test CA, made fresh for each test, that signs a server
//! certificate for `localhost` and `127.0.0.1`, and a [`Receiver`] that serves it.
//!
//! Nothing on the machine trusts the CA; a test hands it to hookwire through
//! `delivery.ca_file` ([`TestCa::pem_file`]), or leaves it out to see the handshake fail.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

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
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("server names");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    /// A rustls server config presenting a certificate for [`SERVER_NAMES`], speaking
    /// HTTP/1.1 only (the receiver is an HTTP/1.1 server).
    pub fn server_config(&self) -> ServerConfig {
        let (cert, key) = self.server_cert(&SERVER_NAMES);
        // aws-lc-rs explicitly: it is the provider reqwest already builds, and naming it
        // does not depend on which providers feature unification happens to enable.
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
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
}
