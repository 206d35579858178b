//! The declared topology and confirmed publishing.

use std::time::Duration;

use hookwire_amqp::{Error, Publisher, Topology};
use hookwire_testkit::{Broker, unique_namespace};

#[tokio::test]
async fn declares_idempotently_with_the_designed_arguments() {
    let broker = Broker::connect().await;
    let ns = unique_namespace();
    let topology = Topology::new(
        &ns,
        [
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(30),
        ],
    );
    let channel = broker.connection().create_channel().await.expect("channel");
    topology.declare(&channel).await.expect("declare");
    topology
        .declare(&channel)
        .await
        .expect("declaring again is a no-op");

    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "arguments",
        ])
        .output()
        .expect("rabbitmqctl");
    let listing = String::from_utf8_lossy(&out.stdout);
    let args_of = |queue: &str| {
        listing
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{queue}\t")))
            .unwrap_or_else(|| panic!("queue {queue} not declared"))
            .to_owned()
    };
    for queue in [format!("{ns}.events"), format!("{ns}.deliveries")] {
        let args = args_of(&queue);
        for expected in [
            r#"{"x-queue-type","quorum"}"#,
            r#"{"x-delivery-limit",20}"#,
            r#"{"x-dead-letter-strategy","at-least-once"}"#,
            r#"{"x-overflow","reject-publish"}"#,
            &format!(r#"{{"x-dead-letter-exchange","{ns}.dlx"}}"#),
        ] {
            assert!(args.contains(expected), "{queue} lacks {expected}: {args}");
        }
    }
    let tiers: Vec<String> = listing
        .lines()
        .filter(|l| l.starts_with(&format!("{ns}.retry.")))
        .map(str::to_owned)
        .collect();
    assert_eq!(tiers.len(), 2, "one queue per distinct delay: {tiers:?}");
    let thirty = args_of(&format!("{ns}.retry.30s"));
    for expected in [
        r#"{"x-message-ttl",37500}"#,
        &format!(r#"{{"x-dead-letter-exchange","{ns}.work"}}"#),
        r#"{"x-dead-letter-strategy","at-least-once"}"#,
        r#"{"x-overflow","reject-publish"}"#,
        r#"{"x-queue-type","quorum"}"#,
    ] {
        assert!(
            thirty.contains(expected),
            "retry.30s lacks {expected}: {thirty}"
        );
    }
    assert!(args_of(&format!("{ns}.dead")).contains("quorum"));
    topology.delete(&channel).await.expect("delete");
}

#[tokio::test]
async fn a_returned_message_is_an_error_not_a_success() {
    let broker = Broker::connect().await;
    let publisher = Publisher::open(broker.connection(), Duration::from_secs(10))
        .await
        .expect("confirm channel");
    let result = publisher
        .publish(
            "",
            &format!("{}.no-such-queue", unique_namespace()),
            b"{}",
            lapin::BasicProperties::default(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::Returned { .. })),
        "got {result:?}"
    );
}
