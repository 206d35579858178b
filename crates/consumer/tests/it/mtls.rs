//! Receivers that require a client certificate: a webhook's own certificate and key are
//! presented when the receiver asks, and its own CA bundle verifies a receiver a private
//! CA signed. Without the certificate, or with one the receiver does not trust, the
//! handshake fails, and the attempt log says so (`error_kind` `tls`, `TLS handshake
//! failed: …`).

use std::time::Duration;

use hookwire_core::client_tls::{ClientIdentity, ClientKey, ClientTls};
use hookwire_testkit::tls::TestCa;
use hookwire_testkit::{Harness, Receiver};

const WAIT: Duration = Duration::from_secs(20);

/// The webhook's TLS settings: `server_ca` trusted, and `client` (certificate, key)
/// presented when given.
fn client_tls(server_ca: &TestCa, client: Option<(String, String)>) -> ClientTls {
    ClientTls {
        identity: client.map(|(cert_pem, key_pem)| ClientIdentity {
            cert_pem,
            key: Some(ClientKey::new(key_pem)),
        }),
        ca_pem: Some(server_ca.pem()),
    }
}

#[tokio::test]
async fn a_receiver_that_requires_a_client_certificate_gets_the_delivery_made_with_it() {
    let (server_ca, client_ca) = (TestCa::new(), TestCa::new());
    let receiver = Receiver::https_requiring_client_cert(&server_ca, &client_ca).await;
    // No delivery.ca_file: the webhook's own CA bundle is what trusts the receiver.
    let h = Harness::start(|_| {}).await;
    assert!(h.config.delivery.ca_file.is_none());
    let sub = h.subscribe_acme_with(&receiver.url(), |s| {
        s.client_tls = client_tls(&server_ca, Some(client_ca.client_cert("acme-webhooks")));
    });
    h.publish_report("evt-mtls", "https://mode.test/r/mtls")
        .await;

    let request = receiver.wait_for(1, WAIT).await.remove(0);
    // The receiver accepts only certificates its client CA signed: the request is the
    // proof that the webhook's certificate was presented.
    assert_eq!(request.path, "/hook");
    let logged = h.wait_attempts(&sub.id, 1, WAIT).await;
    assert_eq!(logged[0].outcome, "delivered", "{logged:?}");
    assert!(h.dead_letters().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn without_the_certificate_or_with_an_untrusted_one_the_handshake_fails_as_tls() {
    let (server_ca, client_ca, other_ca) = (TestCa::new(), TestCa::new(), TestCa::new());
    let receiver = Receiver::https_requiring_client_cert(&server_ca, &client_ca).await;
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_millis(300)]).await;
    let without = h.subscribe_acme_with(&receiver.url(), |s| {
        s.client_tls = client_tls(&server_ca, None);
    });
    let wrong = h.subscribe_acme_with(&receiver.url(), |s| {
        s.client_tls = client_tls(&server_ca, Some(other_ca.client_cert("acme-webhooks")));
    });
    h.publish_report("evt-no-cert", "https://mode.test/r/no-cert")
        .await;

    let dead = h.wait_dead_letters(2, WAIT).await;
    assert!(dead.iter().all(|d| d.reason == "exhausted"), "{dead:?}");
    for sub in [&without, &wrong] {
        let logged = h.wait_attempts(&sub.id, 2, WAIT).await;
        for attempt in &logged {
            assert_eq!(attempt.error_kind.as_deref(), Some("tls"), "{attempt:?}");
            // The receiver's alert: CertificateRequired without one, DecryptError or
            // UnknownCA for a certificate its CA did not sign.
            let error = attempt.error.as_deref().unwrap_or_default();
            assert!(
                error.starts_with("TLS handshake failed: ") && error.contains("alert"),
                "{error}"
            );
            assert!(!error.contains("PRIVATE KEY"), "{error}");
        }
    }
    assert!(
        receiver.requests().is_empty(),
        "no request gets past a refused client certificate"
    );
    h.finish().await;
}

#[tokio::test]
async fn mutual_tls_runs_end_to_end_through_the_delivery_proxy() {
    use hookwire_testkit::proxy::{Proxy, ProxyProtocol};
    let (server_ca, client_ca) = (TestCa::new(), TestCa::new());
    let receiver = Receiver::https_requiring_client_cert(&server_ca, &client_ca).await;
    let proxy = Proxy::start(ProxyProtocol::HttpConnect, None).await;
    let config = proxy.config();
    let h = Harness::start(|c| c.delivery.proxy = Some(config)).await;
    h.subscribe_acme_with(&receiver.url(), |s| {
        s.client_tls = client_tls(&server_ca, Some(client_ca.client_cert("acme-webhooks")));
    });
    h.publish_report("evt-mtls-proxied", "https://mode.test/r/mtls-proxied")
        .await;

    receiver.wait_for(1, WAIT).await;
    assert_eq!(proxy.tunnels(), [receiver.addr()]);
    assert_eq!(
        receiver.accepts(),
        1,
        "the one connection came through the tunnel"
    );
    h.finish().await;
}
