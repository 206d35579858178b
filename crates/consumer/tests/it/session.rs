//! Opening a broker session is bounded in time: a broker that accepts the connection but
//! never answers is given up on, and the daemon tries again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hookwire_testkit::{Harness, Receiver, amqp_url, eventually};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// A loopback proxy to the test broker whose first connection gets no answer at all.
struct SilentFirst {
    url: String,
    accepted: Arc<AtomicUsize>,
    /// Set once the daemon closed the connection that got no answer.
    silent_closed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentFirst {
    async fn start() -> Self {
        let broker_url = amqp_url();
        let host_start = broker_url.rfind('@').map_or(0, |at| at + 1);
        let host_end = broker_url[host_start..]
            .find('/')
            .map_or(broker_url.len(), |i| host_start + i);
        let broker = broker_url[host_start..host_end].to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let url = format!(
            "{}{addr}{}",
            &broker_url[..host_start],
            &broker_url[host_end..]
        );
        let accepted = Arc::new(AtomicUsize::new(0));
        let silent_closed = Arc::new(AtomicBool::new(false));
        let task = {
            let (accepted, silent_closed) = (accepted.clone(), silent_closed.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if accepted.fetch_add(1, Ordering::SeqCst) == 0 {
                        // Read whatever comes, answer nothing, note when it is closed.
                        let silent_closed = silent_closed.clone();
                        tokio::spawn(async move {
                            let mut buf = [0; 1024];
                            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
                            silent_closed.store(true, Ordering::SeqCst);
                        });
                        continue;
                    }
                    let broker = broker.clone();
                    tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(&broker).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                }
            })
        };
        Self {
            url,
            accepted,
            silent_closed,
            task,
        }
    }
}

#[tokio::test]
async fn a_broker_that_never_answers_the_handshake_is_given_up_on_and_retried() {
    let proxy = SilentFirst::start().await;
    // Ready means a session opened: after the silent one was abandoned.
    let h = Harness::start(|c| {
        c.amqp.url = proxy.url.clone();
        c.amqp.open_timeout = Duration::from_secs(1);
    })
    .await;
    assert!(
        proxy.accepted.load(Ordering::SeqCst) >= 2,
        "the daemon opened its session on a second connection"
    );
    let receiver = Receiver::ok().await;
    h.subscribe_acme(&receiver.url());
    h.publish_report("evt-after-silence", "https://mode.test/r")
        .await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    // The abandoned connection is closed, not left open with lapin's I/O thread behind it.
    let closed = proxy.silent_closed.clone();
    eventually(
        Duration::from_secs(10),
        "the abandoned connection to be closed",
        || {
            let closed = closed.clone();
            async move { closed.load(Ordering::SeqCst).then_some(()) }
        },
    )
    .await;
    h.finish().await;
    proxy.task.abort();
}
