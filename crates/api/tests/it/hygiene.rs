//! Hardening of the API's edges: slow clients are cut off, test events are bounded,
//! refusals do not reveal what a name resolves to.

use std::time::{Duration, Instant};

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::receiver::Reply;
use hookwire_testkit::{Harness, Receiver};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Api, error_code};

/// Far above every bound configured below: reaching it means the server never let go.
const NEVER: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Instant) {
    let mut answer = Vec::new();
    tokio::time::timeout(NEVER, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection within the bound")
        .ok();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        Instant::now(),
    )
}

#[tokio::test]
async fn a_client_that_stalls_in_the_request_head_is_disconnected() {
    let h = Harness::start(|c| c.api.header_read_timeout = Duration::from_millis(500)).await;
    let addr = h.api_url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTT")
        .await
        .expect("half a request line");
    let (_, closed) = read_until_closed(&mut stream).await;
    let held = closed - started;
    assert!(
        held >= Duration::from_millis(400),
        "closed by the timeout, not at once: {held:?}"
    );
    // The API still serves others.
    let (status, _) = Api::new(&h).call(Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    h.finish().await;
}

#[tokio::test]
async fn a_request_whose_body_stalls_gets_408() {
    let h = Harness::start(|c| {
        c.delivery.timeout = Duration::from_secs(1);
        c.api.request_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = h.api_url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /v1/orgs/acme/webhooks HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {API_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"url\":"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(NEVER, stream.read(&mut answer))
        .await
        .expect("an answer within the bound")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    h.finish().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let h = Harness::start(|c| {
        c.api.max_connections = 1;
        c.api.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = h.api_url().trim_start_matches("http://").to_owned();
    // The one connection allowed: it stalls until the header timeout closes it.
    let mut stalled = TcpStream::connect(&addr).await.expect("connect");
    stalled.write_all(b"GET /hea").await.expect("write");
    let api = Api::new(&h);
    let other = tokio::spawn(async move {
        let (status, _) = api.call(Method::GET, "/healthz", None).await;
        (status, Instant::now())
    });
    let (_, closed) = read_until_closed(&mut stalled).await;
    let (status, answered) = tokio::time::timeout(NEVER, other)
        .await
        .expect("answered once a slot is free")
        .expect("task");
    assert_eq!(status, 200);
    assert!(
        answered >= closed,
        "the second connection was served only after the first closed"
    );
    h.finish().await;
}

#[tokio::test]
async fn test_events_beyond_the_limit_are_answered_503_at_once() {
    let h = Harness::start(|c| c.api.max_test_sends = 1).await;
    let api = Api::new(&h);
    // The first test event is held for a while; every later one is answered at once.
    let receiver = Receiver::start(|n, _| Reply {
        delay: if n == 0 {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        },
        ..Reply::status(204)
    })
    .await;
    let (status, created) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": receiver.url(), "events": ["report_created"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let test = format!(
        "/v1/orgs/acme/webhooks/{}/test",
        created["id"].as_str().expect("id")
    );

    let slow = {
        let api = Api::new(&h);
        let test = test.clone();
        tokio::spawn(async move { api.call(Method::POST, &test, None).await })
    };
    receiver.wait_for(1, NEVER).await;
    let (status, body) = api.call(Method::POST, &test, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "too_many_test_events"),
        "{body}"
    );
    // Neither a second test event nor a create got through while the first was out.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": receiver.url(), "events": ["report_created"]})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (503, "too_many_test_events"));
    assert_eq!(receiver.requests().len(), 1);

    let (status, body) = slow.await.expect("task");
    assert_eq!((status, body["delivered"].as_bool()), (200, Some(true)));
    // The permit is back.
    let (status, body) = api.call(Method::POST, &test, None).await;
    assert_eq!(
        (status, body["delivered"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    h.finish().await;
}

/// `localhost` with loopback refused (production defaults): the answer names the rule,
/// never the address the name resolved to. Nothing leaves the machine.
#[tokio::test]
async fn a_refused_name_is_answered_without_its_addresses() {
    let h = Harness::start(|c| {
        c.delivery.allowed_cidrs = Vec::new();
        c.delivery.only_allowed_cidrs = false;
    })
    .await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let port = receiver.addr().port();
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/webhooks?verify=false",
            Some(json!({"url": format!("http://localhost:{port}/hook"), "events": ["report_created"]})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "target_refused"),
        "{body}"
    );
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("loopback"), "the rule is named: {message}");
    for address in ["127.0.0.1", "::1", "127."] {
        assert!(!message.contains(address), "{address} revealed: {message}");
    }
    assert_eq!(receiver.accepts(), 0, "refused before any connection");
    h.finish().await;
}

/// What an HTTP/2 client sends first; the API then waits for its first request.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn idle_and_slow_sockets_beyond_the_cap_cannot_lock_the_api_out() {
    const CAP: usize = 4;
    let h = Harness::start(|c| {
        c.api.max_connections = CAP;
        c.api.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = h.api_url().trim_start_matches("http://").to_owned();
    // Three times the cap: silent after connecting, an HTTP/2 preface and nothing more,
    // half a request head, and one whole request then silence on the kept-alive socket.
    let mut hostile = Vec::new();
    for i in 0..3 * CAP {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let sends: &[u8] = match i % 4 {
            0 => b"",
            1 => HTTP2_PREFACE,
            2 => b"GET /healthz HTTP/1.1\r\nhost: x\r\n",
            _ => b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
        };
        stream.write_all(sends).await.expect("write");
        hostile.push(stream);
    }
    // And one that trickles a head that never ends, a byte every 100 ms.
    let trickling = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            let started = Instant::now();
            for byte in b"GET /healthz HTTP/1.1\r\nx-slow: "
                .iter()
                .chain(b"a".repeat(1000).iter())
            {
                if stream.write_all(&[*byte]).await.is_err() {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("a head trickled for 100 s was never cut off");
        })
    };

    let (status, _) = tokio::time::timeout(NEVER, Api::new(&h).call(Method::GET, "/healthz", None))
        .await
        .expect("the API answers while hostile sockets are open");
    assert_eq!(status, 200);
    for mut stream in hostile {
        read_until_closed(&mut stream).await;
    }
    let trickled = tokio::time::timeout(NEVER, trickling)
        .await
        .expect("the trickling client is cut off")
        .expect("task");
    assert!(trickled < NEVER, "{trickled:?}");
    h.finish().await;
}

#[tokio::test]
async fn health_and_metrics_answer_on_the_ops_port_while_the_api_port_is_full() {
    let h = Harness::start(|c| {
        c.api.max_connections = 2;
        c.api.ops_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let ops = h.ops_url().expect("an operations port");
    let addr = h.api_url().trim_start_matches("http://").to_owned();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for (path, status) in [
        ("/readyz", 200),
        ("/metrics", 200),
        ("/healthz", 200),
        ("/v1/whoami", 404),
    ] {
        let answer = tokio::time::timeout(NEVER, client.get(format!("{ops}{path}")).send())
            .await
            .expect("the operations port answers while the API port is full")
            .expect("an answer");
        assert_eq!(answer.status().as_u16(), status, "{path}");
    }
    drop(silent);
    // The API port keeps liveness and no longer serves readiness or metrics.
    let api = Api::new(&h);
    for (path, status) in [("/healthz", 200), ("/readyz", 404), ("/metrics", 404)] {
        let (got, body) = api.call(Method::GET, path, None).await;
        assert_eq!(got, status, "{path}: {body}");
    }
    h.finish().await;
}
