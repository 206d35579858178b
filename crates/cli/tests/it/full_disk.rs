//! A store that cannot be written: `serve` under a file-size limit (`ulimit -f`, with
//! SIGXFSZ ignored, so a write past it fails with EFBIG as on a full disk). `/readyz`
//! says so, and the dead letters that cannot be archived stay in the dead queue.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use hookwire_testkit::{Broker, ServeChild, eventually, test_config, unique_namespace};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use crate::write_config;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn readyz_reports_a_store_that_cannot_be_written_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(&unique_namespace(), &dir.path().join("store"));
    let path = write_config(&config, dir.path());
    // bash's `ulimit -f` counts KiB: 2 MiB for sled's files (and the log).
    let wrapper = dir.path().join("limited-hookwire");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\ntrap '' XFSZ\nulimit -f 2048\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_hookwire")
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let log = dir.path().join("serve.log");
    let mut serve = ServeChild::spawn(&wrapper, &path, &log, &[]).expect("serve starts");
    let api = serve.wait_ready(WAIT).await.expect("serve consumes");

    // Broken events of ~60 KiB each: every one is archived as a dead letter, until the
    // store's files reach the limit.
    let broker = Broker::connect().await;
    let mut h = FieldTable::default();
    h.insert("org".into(), AMQPValue::LongString("acme".into()));
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(h);
    let body = vec![b'x'; 60 * 1024];
    let published = 80;
    for _ in 0..published {
        broker
            .publish_raw(
                &config.amqp.namespace,
                "report_created",
                &body,
                props.clone(),
            )
            .await;
    }

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let problems = eventually(WAIT, "/readyz to report the store", || async {
        let answer = http.get(format!("http://{api}/readyz")).send().await.ok()?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.ok()?;
        (status == 503).then_some(body)
    })
    .await;
    assert!(
        problems.to_string().contains("store cannot be written"),
        "{problems}"
    );
    serve.check_alive().expect("serve keeps running");
    // The letters not archived are still in the dead queue (held and retried, never
    // dropped); the broken events themselves all left the events queue.
    let dead_queue = format!("{}.dead", config.amqp.namespace);
    // `rabbitmqctl` counts unacked messages every few seconds.
    eventually(
        WAIT,
        "dead letters held unacked, waiting for the store",
        || async {
            let waiting = u64::from(broker.ready(&dead_queue).await) + Broker::unacked(&dead_queue);
            (waiting > 0).then_some(())
        },
    )
    .await;
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(
        log_text.contains("kept and retried") && !log_text.contains("Broker session ended"),
        "a failed write holds its message; it does not reset the session:\n{}",
        serve.log_tail()
    );
    serve.kill().expect("serve stops");
    let channel = broker.connection().create_channel().await.expect("channel");
    hookwire_amqp::Topology::of_config(&config)
        .expect("topology")
        .delete(&channel)
        .await
        .expect("namespace deleted");
}
