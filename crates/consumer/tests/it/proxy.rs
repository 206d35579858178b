//! `delivery.proxy`: deliveries leave through a loopback HTTP CONNECT or SOCKS5 proxy that
//! counts what reaches it. hookwire resolves and checks the target itself and asks the
//! proxy for the checked address, so a refused target never reaches the proxy; a proxy
//! that is down fails the attempt as a connection failure, which is retried.

use std::time::Duration;

use hookwire_testkit::proxy::{Proxy, ProxyProtocol};
use hookwire_testkit::tls::TestCa;
use hookwire_testkit::{Harness, Receiver};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn deliveries_leave_through_an_http_connect_proxy_that_asks_for_credentials() {
    let proxy = Proxy::start(
        ProxyProtocol::HttpConnect,
        Some(("hookwire", "pr0xy-s3cret")),
    )
    .await;
    let config = proxy.config();
    let h = Harness::start(|c| c.delivery.proxy = Some(config)).await;
    let receiver = Receiver::ok().await;
    h.subscribe_acme(&receiver.url());
    h.publish_report("evt-proxied-1", "https://mode.test/r/1")
        .await;
    h.publish_report("evt-proxied-2", "https://mode.test/r/2")
        .await;

    receiver.wait_for(2, WAIT).await;
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty(), "the deliveries went through the proxy");
    assert!(
        tunnels.iter().all(|t| *t == receiver.addr()),
        "the proxy was asked for the receiver's checked address: {tunnels:?}"
    );
    assert_eq!(
        receiver.accepts(),
        tunnels.len(),
        "every connection the receiver accepted came through a tunnel"
    );
    assert_eq!(proxy.refused_credentials(), 0, "the credentials were sent");
    h.finish().await;
}

#[tokio::test]
async fn https_deliveries_through_a_socks5_proxy_ask_for_an_address_and_verify_the_url_host() {
    let ca = TestCa::new();
    let ca_file = ca.pem_file();
    let proxy = Proxy::start(ProxyProtocol::Socks5, Some(("hookwire", "s0cks-s3cret"))).await;
    let password_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(password_file.path(), "s0cks-s3cret\n").expect("write the password");
    let mut config = proxy.config();
    config.password = None;
    config.password_file = Some(password_file.path().to_owned());
    let h = Harness::start(|c| {
        c.delivery.ca_file = Some(ca_file.path().to_owned());
        c.delivery.proxy = Some(config);
    })
    .await;
    let receiver = Receiver::https_ok(&ca).await;
    // `https://localhost:PORT`: the certificate names `localhost`, so the handshake only
    // succeeds when TLS inside the tunnel still names the URL's host.
    h.subscribe_acme(&receiver.url());
    h.publish_report("evt-socks", "https://mode.test/r/socks")
        .await;

    receiver.wait_for(1, WAIT).await;
    let targets = proxy.targets();
    assert!(
        targets.iter().all(|t| t
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback() && a.port() == receiver.addr().port())),
        "the proxy was only ever asked for checked addresses, never the name: {targets:?}"
    );
    assert_eq!(proxy.tunnels(), [receiver.addr()]);
    assert_eq!(receiver.accepts(), 1);
    assert!(h.dead_letters().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_target_the_policy_refuses_never_reaches_the_proxy() {
    let proxy = Proxy::start(ProxyProtocol::HttpConnect, None).await;
    let config = proxy.config();
    let h = Harness::start(|c| c.delivery.proxy = Some(config)).await;
    // A private address and a host name: loopback-only mode refuses both, before any
    // DNS query or connection.
    let private = h.subscribe_acme("http://10.1.2.3:8080/hook");
    let named = h.subscribe_acme("http://internal.example/hook");
    h.publish_report("evt-refused", "https://mode.test/r/refused")
        .await;

    let dead = h.wait_dead_letters(2, WAIT).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for sub in [&private, &named] {
        let logged = h.wait_attempts(&sub.id, 1, WAIT).await;
        assert_eq!(
            logged[0].error_kind.as_deref(),
            Some("target_refused"),
            "{logged:?}"
        );
    }
    assert_eq!(proxy.connections(), 0, "nothing reached the proxy");
    assert!(proxy.targets().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_proxy_that_is_down_fails_each_attempt_as_a_connection_failure_which_is_retried() {
    // A loopback port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let h = Harness::start(|c| {
        c.delivery.retry_schedule = vec![Duration::from_millis(300)];
        c.delivery.proxy = Some(hookwire_core::config::ProxyConfig {
            url: format!("socks5://127.0.0.1:{port}"),
            username: Some("hookwire".into()),
            password: Some("never-shown".into()),
            password_file: None,
        });
    })
    .await;
    let receiver = Receiver::ok().await;
    let sub = h.subscribe_acme(&receiver.url());
    h.publish_report("evt-proxy-down", "https://mode.test/r/down")
        .await;

    let dead = h.wait_dead_letter("exhausted", WAIT).await;
    assert!(dead.detail.contains("2 attempts"), "{}", dead.detail);
    let logged = h.wait_attempts(&sub.id, 2, WAIT).await;
    assert_eq!(logged[0].outcome, "retry", "{logged:?}");
    for attempt in &logged {
        assert_eq!(
            attempt.error_kind.as_deref(),
            Some("connect"),
            "{attempt:?}"
        );
        let error = attempt.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("cannot reach the delivery proxy") && error.contains("refused"),
            "{error}"
        );
        assert!(!error.contains("never-shown"), "{error}");
    }
    assert_eq!(receiver.accepts(), 0, "nothing went around the proxy");
    h.finish().await;
}
