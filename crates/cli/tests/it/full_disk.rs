//! A store that cannot be written: `serve` under a file-size limit (`ulimit -f`, with
//! SIGXFSZ ignored, so a write past it fails with EFBIG as on a full disk). `/readyz`
//! says so, the dead letters that cannot be archived stay in the dead queue, good events
//! are still delivered, and every published event is accounted for.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use hookwire_amqp::Topology;
use hookwire_core::event::webhook_id;
use hookwire_testkit::serve_child::seed_store;
use hookwire_testkit::{
    Broker, Receiver, ServeChild, eventually, new_subscription, test_config, unique_namespace,
};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use crate::write_config;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn readyz_reports_a_store_that_cannot_be_written_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(&unique_namespace(), &dir.path().join("store"));
    let path = write_config(&config, dir.path());
    let receiver = Receiver::ok().await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    seed_store(&config, std::slice::from_ref(&sub)).expect("seed the store");
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
    let body = vec![b'x'; 60 * 1024];
    let mut published = BTreeSet::new();
    for i in 0..80 {
        let id = format!("broken-{i}");
        let mut h = FieldTable::default();
        h.insert("org".into(), AMQPValue::LongString("acme".into()));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(id.as_str().into())
            .with_headers(h);
        broker
            .publish_raw(&config.amqp.namespace, "report_created", &body, props)
            .await;
        published.insert(id);
    }

    let problems = crate::not_ready(api, WAIT, "/readyz to report the store").await;
    assert!(
        problems.to_string().contains("store cannot be written"),
        "{problems}"
    );

    // Good events published once the store is full are still delivered.
    let producer = crate::producer_for(&config).await;
    let good: Vec<String> = (0..20).map(|i| format!("good-{i}")).collect();
    for id in &good {
        let mut data = serde_json::Map::new();
        data.insert(
            "report_run_url".into(),
            format!("https://mode.test/r/{id}").into(),
        );
        let event = hookwire_amqp::OutgoingEvent {
            org: "acme".into(),
            event_type: "report_created".into(),
            id: id.clone(),
            data,
        };
        producer.publish(&event).await.expect("publish confirmed");
        published.insert(id.clone());
    }
    producer.close().await.expect("close");
    let delivered = || -> BTreeSet<String> {
        let answered: BTreeSet<String> = receiver
            .answered()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        good.iter()
            .filter(|id| answered.contains(&webhook_id(id, &sub.id)))
            .cloned()
            .collect()
    };
    eventually(WAIT, "every good event delivered", || async {
        (delivered().len() == good.len()).then_some(())
    })
    .await;

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

    // Every published event is delivered, archived, or held in a queue:
    // delivered + archived + held = published, each event counted once, in that order (an
    // ack in flight at the kill may leave a delivered or archived one queued too).
    let store = hookwire_store::Store::open(
        &config.store.path,
        8 << 20,
        &config.secrets_key().expect("key"),
    )
    .expect("the store opens");
    let delivered = delivered();
    let archived: BTreeSet<String> = store
        .all_dead_letters()
        .expect("dead letters")
        .into_iter()
        .filter_map(|d| d.event_id)
        .filter(|id| !delivered.contains(id))
        .collect();
    drop(store);
    let topology = Topology::of_config(&config).expect("topology");
    let names = &topology.names;
    let mut queues = vec![
        names.events_queue(),
        names.deliveries_queue(),
        names.dead_queue(),
        names.unrouted_queue(),
    ];
    queues.extend(topology.tiers.iter().map(|t| names.retry_queue(*t)));
    // The killed serve's unacked messages return to their queues once the broker sees its
    // connections close.
    let mut held = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    loop {
        for queue in &queues {
            for (props, _) in broker.drain(queue).await {
                let id = event_id_of(&props);
                if !delivered.contains(&id) && !archived.contains(&id) {
                    held.insert(id);
                }
            }
        }
        if delivered.len() + archived.len() + held.len() >= published.len()
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "full store: delivered {} + archived {} + held {} of {} published",
        delivered.len(),
        archived.len(),
        held.len(),
        published.len()
    );
    assert!(
        !archived.is_empty() && !held.is_empty(),
        "some archived ({}) and some held ({})",
        archived.len(),
        held.len()
    );
    let accounted: BTreeSet<String> = delivered
        .iter()
        .chain(&archived)
        .chain(&held)
        .cloned()
        .collect();
    let missing: Vec<_> = published.difference(&accounted).collect();
    let unknown: Vec<_> = accounted.difference(&published).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "delivered {} + archived {} + held {} of {} published: missing {missing:?}, never published {unknown:?}",
        delivered.len(),
        archived.len(),
        held.len(),
        published.len()
    );
    let channel = broker.connection().create_channel().await.expect("channel");
    topology.delete(&channel).await.expect("namespace deleted");
}

/// The event a queued message carries: hookwire's event-id header (a delivery task, or a
/// dead letter of one), else its message id (an event, or a dead letter of one).
fn event_id_of(props: &BasicProperties) -> String {
    let header = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(hookwire_amqp::wire::EVENT_ID).cloned());
    match header {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        _ => props
            .message_id()
            .as_ref()
            .map_or_else(String::new, |m| m.to_string()),
    }
}
