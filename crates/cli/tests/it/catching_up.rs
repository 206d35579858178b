//! A replicated node that has not caught up with the changes stream answers `/readyz` 503
//! naming it, and does not consume: a load balancer sends it no traffic, and it delivers
//! nothing from an incomplete store.

use std::time::Duration;

use hookwire_amqp::Publisher;
use hookwire_amqp::envelope::{Origin, StreamKey, VERSION};
use hookwire_amqp::lapin::BasicProperties;
use hookwire_testkit::Harness;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_catching_up_with_the_changes_stream_is_not_ready() {
    let first = Harness::start(|c| c.replication.enabled = true).await;
    // An entry of a newer build: no node of this build applies past it, so a node started
    // now never reaches its own mark behind it, and stays catching up.
    let key = StreamKey::derive(&first.config.secrets_key().expect("a key"));
    let stream = format!("{}.changes", first.namespace());
    let origin = Origin {
        node: "newer-node".into(),
        session: Uuid::now_v7(),
        seq: 0,
    };
    let newer = key.seal_as(VERSION + 1, &stream, &origin, b"{\"op\":\"something_new\"}");
    let publisher = Publisher::open(first.broker.connection(), WAIT)
        .await
        .expect("a confirm channel");
    publisher
        .publish("", &stream, &newer, BasicProperties::default())
        .await
        .expect("the stream takes it");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = first.config.clone();
    config.store.path = dir.path().join("store");
    let app = hookwire_app::App::build(&config).await.expect("builds");
    let (api, consuming) = (app.api_addr().expect("an address"), app.readiness());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));

    let problems =
        crate::not_ready(api, WAIT, "/readyz to say it is catching up").await["problems"]
            .to_string();
    assert!(
        problems.contains("catching up with the changes stream"),
        "{problems}"
    );
    assert!(
        !consuming.load(std::sync::atomic::Ordering::SeqCst),
        "a node that has not caught up consumes nothing"
    );

    let _ = stop.send(());
    running.await.expect("its task").expect("stops cleanly");
    first.finish().await;
}
