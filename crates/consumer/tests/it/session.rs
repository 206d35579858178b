//! Opening a broker session is bounded in time: a broker that accepts the connection but
//! never answers is given up on, and the daemon tries again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookwire_testkit::{Harness, Receiver, amqp_url, new_subscription};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// A loopback proxy to the test broker whose first connection gets no answer at all.
struct SilentFirst {
    url: String,
    accepted: Arc<AtomicUsize>,
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
        let task = {
            let accepted = accepted.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if accepted.fetch_add(1, Ordering::SeqCst) == 0 {
                        // Read whatever comes and answer nothing.
                        tokio::spawn(async move {
                            let mut buf = [0; 1024];
                            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
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
        c.amqp.open_timeout_secs = 1;
    })
    .await;
    assert!(
        proxy.accepted.load(Ordering::SeqCst) >= 2,
        "the daemon opened its session on a second connection"
    );
    let receiver = Receiver::ok().await;
    h.subscribe(&new_subscription(
        "acme",
        &receiver.url(),
        &["report_created"],
    ));
    h.publish(
        "acme",
        "report_created",
        "evt-after-silence",
        "report_run_url",
        "https://mode.test/r",
    )
    .await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    h.finish().await;
    proxy.task.abort();
}
