//! `hookwire publish` takes `amqp.confirm_timeout` and `amqp.connection_name` from its
//! configuration: seen through a relay to the real broker that withholds the broker's
//! confirms.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_amqp::Topology;
use hookwire_testkit::{Broker, test_config, unique_namespace};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::hookwire;

/// The method id of `basic.ack`: class 60, method 80.
const BASIC_ACK: [u8; 4] = [0, 60, 0, 80];

/// A TCP relay to the broker that passes everything on but the broker's `basic.ack`
/// frames: no publish is ever confirmed. Keeps every byte the clients sent.
struct StallingRelay {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl StallingRelay {
    async fn start(broker: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let all_sent = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let sent = all_sent.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(broker).await {
                        relay(client, server, sent).await;
                    }
                });
            }
        });
        Self { port, sent }
    }

    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().expect("lock")).into_owned()
    }
}

/// The complete AMQP frames at the start of `pending`, taken out of it.
fn whole_frames(pending: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(header) = pending.get(..7) {
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        if pending.len() < 7 + size + 1 {
            break;
        }
        frames.push(pending.drain(..7 + size + 1).collect());
    }
    frames
}

async fn relay(client: TcpStream, server: TcpStream, sent: Arc<Mutex<Vec<u8>>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            sent.lock().expect("lock").extend_from_slice(&buf[..n]);
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0; 64 * 1024];
        let mut pending = Vec::new();
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            pending.extend_from_slice(&buf[..n]);
            for frame in whole_frames(&mut pending) {
                let is_ack = frame[0] == 1 && frame.get(7..11) == Some(&BASIC_ACK[..]);
                if !is_ack && client_write.write_all(&frame).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::join!(upstream, downstream);
}

#[tokio::test]
async fn publish_waits_amqp_confirm_timeout_and_names_its_connection_after_amqp_connection_name() {
    let relay = StallingRelay::start("127.0.0.1:5672").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let namespace = unique_namespace();
    let name = format!("{namespace}-publisher");
    // Declared, so that the publish is routed and only its confirm is missing.
    let broker = Broker::connect().await;
    let channel = broker.connection().create_channel().await.expect("channel");
    let topology =
        Topology::of_config(&test_config(&namespace, &dir.path().join("store"))).expect("topology");
    topology.declare(&channel).await.expect("declare");
    let config = dir.path().join("hookwire.toml");
    std::fs::write(
        &config,
        format!(
            "[amqp]\nurl = \"amqp://guest:guest@127.0.0.1:{}/%2f\"\nnamespace = \"{}\"\n\
             connection_name = \"{name}\"\nconfirm_timeout = \"1s\"\n",
            relay.port, namespace
        ),
    )
    .expect("write config");
    let started = Instant::now();
    let mut publish = hookwire();
    publish
        .args(["publish", "--config"])
        .arg(&config)
        .args(["--org", "acme", "--event-type", "report_run_completed"])
        .arg("--data")
        .arg(json!({"report_run_url": "https://mode.test/runs/1"}).to_string())
        .stdin(Stdio::null());
    // Off the test's runtime thread, which the relay runs on.
    let out = tokio::task::spawn_blocking(move || publish.output())
        .await
        .expect("join")
        .expect("hookwire runs");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "published without a confirm: {stderr}"
    );
    assert!(
        stderr.contains("no publisher confirm within 1s"),
        "{stderr}"
    );
    // Three attempts of 1 s each and the pauses between them; the default of 30 s would
    // take 90 s.
    assert!(took < Duration::from_secs(20), "took {took:?}: {stderr}");
    let sent = relay.sent();
    topology.delete(&channel).await.expect("namespace deleted");
    assert!(
        sent.contains(&format!("{name}@publish")),
        "the connection's name was not {name}@publish"
    );
}
