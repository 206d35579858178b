//! `delivery.proxy` covers the API's outbound requests too: the test event on create, and
//! a resend, leave through the proxy like deliveries do; a URL the policy refuses is
//! answered 422 without the proxy hearing of it.

use std::time::Duration;

use hookwire_testkit::proxy::{Proxy, ProxyProtocol};
use hookwire_testkit::{Harness, Receiver, eventually};
use serde_json::json;

use crate::{Api, webhook};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_test_event_a_delivery_and_a_resend_all_leave_through_the_proxy() {
    let proxy = Proxy::start(ProxyProtocol::Socks5, Some(("hookwire", "s0cks-s3cret"))).await;
    let config = proxy.config();
    let h = Harness::start(|c| c.delivery.proxy = Some(config)).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    // Every step must add the receiver's connections only through tunnels.
    let through_proxy = |step: &str| {
        let tunnels = proxy.tunnels();
        assert!(
            tunnels.iter().all(|t| *t == receiver.addr()),
            "{step}: {tunnels:?}"
        );
        assert_eq!(
            receiver.accepts(),
            tunnels.len(),
            "{step}: a connection went around the proxy"
        );
    };

    let created = api.create(webhook(&receiver.url())).await;
    let test_event = receiver.wait_for(1, WAIT).await;
    assert!(
        !proxy.tunnels().is_empty(),
        "the test event went through the proxy"
    );
    through_proxy("test event");
    assert_eq!(test_event[0].path, "/hook");

    h.publish_report("evt-proxy", "https://mode.test/r/proxy")
        .await;
    receiver.wait_for(2, WAIT).await;
    through_proxy("delivery");

    eventually(WAIT, "the event's body to be kept", || async {
        h.store.payload("acme", "evt-proxy").expect("store")
    })
    .await;
    let (status, answer) = api
        .post(
            &format!("{}/resend", created.path),
            json!({"event_id": "evt-proxy"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let all = receiver.wait_for(3, WAIT).await;
    assert_eq!(all[2].header("webhook-id"), all[1].header("webhook-id"));
    through_proxy("resend");
    assert_eq!(proxy.refused_credentials(), 0);

    // Refused at create, before any test event: the proxy hears nothing more.
    let connections = proxy.connections();
    api.create_refused(webhook("http://10.1.2.3:8080/hook"), 422, "target_refused")
        .await;
    assert_eq!(
        proxy.connections(),
        connections,
        "a refused URL never reaches the proxy"
    );
    h.finish().await;
}
