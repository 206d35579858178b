//! `https` targets: a loopback receiver whose certificate a test CA signed gets its
//! delivery once hookwire is given that CA through `delivery.ca_file`, and fails the
//! handshake (retried, then dead-lettered) when it is not.

use std::time::Duration;

use hookwire_testkit::tls::TestCa;
use hookwire_testkit::{Harness, Receiver, new_subscription};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn an_https_receiver_signed_by_the_ca_file_gets_its_delivery() {
    let ca = TestCa::new();
    let ca_file = ca.pem_file();
    let h = Harness::start(|c| c.delivery.ca_file = Some(ca_file.path().to_owned())).await;
    let receiver = Receiver::https_ok(&ca).await;
    assert!(receiver.url().starts_with("https://localhost:"));
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    h.publish_report("evt-https", "https://mode.test/r/tls")
        .await;

    let request = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(
        request.body.as_ref(),
        br#"{"event":"report_created","report_run_url":"https://mode.test/r/tls"}"#
    );
    assert_eq!(request.path, "/hook");
    let ts: u64 = request
        .header("webhook-timestamp")
        .parse()
        .expect("numeric timestamp");
    sub.keys[0]
        .secret
        .verify(
            request.header("webhook-id"),
            ts,
            &request.body,
            request.header("webhook-signature"),
        )
        .expect("signature verifies");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 1, "delivered once");
    assert!(h.dead_letters().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn without_the_ca_file_the_handshake_fails_and_the_delivery_is_exhausted() {
    let ca = TestCa::new();
    let h = Harness::start(|c| c.delivery.retry_schedule = vec![Duration::from_millis(500)]).await;
    assert!(h.config.delivery.ca_file.is_none());
    let receiver = Receiver::https_ok(&ca).await;
    h.subscribe_acme(&receiver.url());
    h.publish_report("evt-untrusted", "https://mode.test/r/untrusted")
        .await;

    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "exhausted");
    let detail = dead[0].detail.to_lowercase();
    assert!(
        detail.contains("2 attempts") && detail.contains("certificate"),
        "{detail}"
    );
    assert_eq!(
        receiver.accepts(),
        2,
        "one connection per attempt: the first and one retry"
    );
    assert!(
        receiver.requests().is_empty(),
        "no HTTP request gets past a failed handshake"
    );
    h.finish().await;
}
