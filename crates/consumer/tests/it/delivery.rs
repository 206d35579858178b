//! The happy path: every catalog event delivered to the right subscribers, signed.

use std::time::Duration;

use hookwire_core::Catalog;
use hookwire_testkit::tools::{self, verify_with_standardwebhooks};
use hookwire_testkit::{Harness, Receiver, new_subscription};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_event_type_reaches_exactly_its_subscribers_byte_for_byte() {
    let h = Harness::start(|_| {}).await;
    let all_types: Vec<String> = Catalog::builtin()
        .types()
        .filter(|t| !t.operational)
        .map(|t| t.name.clone())
        .collect();
    let all_refs: Vec<&str> = all_types.iter().map(String::as_str).collect();
    let (everything, reports_only, other_org) = (
        Receiver::ok().await,
        Receiver::ok().await,
        Receiver::ok().await,
    );
    let sub_all = new_subscription("acme", &everything.url(), &all_refs);
    let sub_reports = new_subscription(
        "acme",
        &reports_only.url(),
        &["report_created", "report_run_completed"],
    );
    let sub_other = new_subscription("globex", &other_org.url(), &all_refs);
    for s in [&sub_all, &sub_reports, &sub_other] {
        h.subscribe(s);
    }

    for t in Catalog::builtin().types().filter(|t| !t.operational) {
        h.publish(
            "acme",
            &t.name,
            &format!("id-{}", t.name),
            &t.fields[0],
            &format!("https://mode.test/{}", t.name),
        )
        .await;
    }

    let got = everything.wait_for(all_types.len(), WAIT).await;
    let reports = reports_only.wait_for(2, WAIT).await;
    // Give stray deliveries a moment to show up before asserting there are none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        everything.requests().len(),
        all_types.len(),
        "one delivery per event"
    );
    assert_eq!(reports_only.requests().len(), 2, "event-type filtering");
    assert!(
        other_org.requests().is_empty(),
        "org B never sees org A's events"
    );

    for t in Catalog::builtin().types().filter(|t| !t.operational) {
        let expected = format!(
            r#"{{"event":"{}","{}":"https://mode.test/{}"}}"#,
            t.name, t.fields[0], t.name
        );
        let r = got
            .iter()
            .find(|r| r.body == expected.as_bytes())
            .unwrap_or_else(|| panic!("no delivery of {}", t.name));
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("user-agent").starts_with("hookwire/"));
        assert!(r.header("webhook-id").starts_with("msg_"));
        let ts: u64 = r
            .header("webhook-timestamp")
            .parse()
            .expect("numeric timestamp");
        assert!(hookwire_core::now_ms() / 1000 - ts < 60);
        sub_all.keys[0]
            .secret
            .verify(
                r.header("webhook-id"),
                ts,
                &r.body,
                r.header("webhook-signature"),
            )
            .expect("signature verifies");
    }
    let report_bodies: Vec<&[u8]> = reports.iter().map(|r| r.body.as_ref()).collect();
    assert!(
        report_bodies
            .iter()
            .all(|b| b.starts_with(br#"{"event":"report_"#))
    );
    h.finish().await;
}

#[tokio::test]
async fn signature_verifies_with_the_standard_webhooks_python_library() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let sub = new_subscription("acme", &receiver.url(), &["definition_updated"]);
    h.subscribe(&sub);
    h.publish(
        "acme",
        "definition_updated",
        "evt-sw",
        "definition_url",
        "https://mode.test/d/1",
    )
    .await;
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    let secret = sub.keys[0].secret.to_whsec();
    verify_with_standardwebhooks(&secret, &request)
        .expect("standardwebhooks accepts hookwire's signature");
    let mut tampered = request.clone();
    tampered.body = bytes::Bytes::from_static(
        br#"{"event":"definition_updated","definition_url":"https://evil.test"}"#,
    );
    assert!(
        verify_with_standardwebhooks(&secret, &tampered).is_err(),
        "a tampered body must fail"
    );
    h.finish().await;
}

#[tokio::test]
async fn events_from_python_pika_and_node_amqplib_are_delivered() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    h.subscribe(&new_subscription(
        "acme",
        &receiver.url(),
        &["report_run_completed"],
    ));
    let common = |id: &str| {
        vec![
            "--url".to_owned(),
            h.config.amqp.url.clone(),
            "--namespace".into(),
            h.namespace().to_owned(),
            "--org".into(),
            "acme".into(),
            "--event".into(),
            "report_run_completed".into(),
            "--data".into(),
            format!(r#"{{"report_run_url":"https://mode.test/runs/{id}"}}"#),
            "--id".into(),
            id.to_owned(),
        ]
    };
    tools::run_ok(
        std::process::Command::new(tools::python())
            .arg(tools::repo_root().join("tests/py/publish_pika.py"))
            .args(common("from-pika")),
    );
    tools::run_ok(
        std::process::Command::new("node")
            .arg(tools::node_dir().join("publish_amqplib.js"))
            .args(common("from-node")),
    );
    let got = receiver.wait_for(2, WAIT).await;
    for id in ["from-pika", "from-node"] {
        let expected = format!(
            r#"{{"event":"report_run_completed","report_run_url":"https://mode.test/runs/{id}"}}"#
        );
        assert!(
            got.iter().any(|r| r.body == expected.as_bytes()),
            "{id} not delivered byte for byte: {got:?}"
        );
    }
    h.finish().await;
}

/// Two daemons on one namespace compete for its events: each delivers some, together
/// they deliver every one, and each attempt log holds only its own node's attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_namespace_share_its_events() {
    const EVENTS: usize = 60;
    let receiver = Receiver::start(|_, _| hookwire_testkit::Reply {
        status: 200,
        headers: vec![],
        // Slow enough that one daemon's prefetch never holds every event.
        delay: Duration::from_millis(20),
    })
    .await;
    let sub = new_subscription("acme", &receiver.url(), &["report_run_completed"]);
    let h = Harness::start(|_| {}).await;
    h.subscribe(&sub);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = h.config.clone();
    config.store.path = dir.path().to_owned();
    config.node.id = "second".into();
    let second = hookwire_app::App::build(&config).await.expect("builds");
    second
        .store()
        .apply(hookwire_store::Change::Upsert(sub.clone()))
        .expect("seed the second store");
    let second_store = second.store().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(second.run(async {
        let _ = stopped.await;
    }));
    hookwire_testkit::eventually(WAIT, "two consumers", || async {
        (h.broker
            .consumers(&format!("{}.events", h.namespace()))
            .await
            == 2)
            .then_some(())
    })
    .await;
    for i in 0..EVENTS {
        h.publish(
            "acme",
            "report_run_completed",
            &format!("evt-{i}"),
            "report_run_url",
            &format!("https://mode.test/runs/{i}"),
        )
        .await;
    }
    receiver.wait_for(EVENTS, WAIT).await;
    let attempts = |store: &hookwire_store::Store| {
        store
            .attempts(
                &sub.id,
                &hookwire_store::AttemptQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .expect("attempts")
            .items
            .len()
    };
    let (first, other) =
        hookwire_testkit::eventually(WAIT, "both attempt logs written", || async {
            let (a, b) = (attempts(&h.store), attempts(&second_store));
            (a + b >= EVENTS).then_some((a, b))
        })
        .await;
    assert!(
        first > 0 && other > 0,
        "both daemons delivered: {first} and {other}"
    );
    let bodies: std::collections::BTreeSet<Vec<u8>> = receiver
        .requests()
        .iter()
        .map(|r| r.body.to_vec())
        .collect();
    assert_eq!(bodies.len(), EVENTS, "every event delivered");
    let _ = stop.send(());
    running
        .await
        .expect("join")
        .expect("the second daemon stops");
    h.finish().await;
}

#[tokio::test]
async fn a_producers_repeat_of_an_event_is_delivered_once() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    h.subscribe_acme(&receiver.url());
    h.publish_report("evt-repeat", "https://mode.test/r/1")
        .await;
    receiver.wait_for(1, WAIT).await;
    // As a producer whose publisher confirm was lost publishes again: the same id and
    // body, two seconds later, when the first copy is kept for resending.
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.publish_report("evt-repeat", "https://mode.test/r/1")
        .await;
    h.publish_report("evt-next", "https://mode.test/r/2").await;
    receiver.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies.len(), 2, "the repeat is not delivered: {bodies:?}");
    assert!(bodies[1].contains("/r/2"), "{bodies:?}");
    let metrics = h.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hookwire_events_repeated_total ") && !l.ends_with(" 0")),
        "the repeat is counted"
    );
    h.finish().await;
}
