//! The shipped Prometheus rules (`deploy/prometheus/`): promtool checks them and runs
//! their unit tests, and Debian's Prometheus loads them as they are, scrapes two `serve`
//! children every second and raises their alerts through its own API: one node whose
//! webhook's receiver answers 500 and which dead-letters an event, one whose broker is
//! not there.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hookwire_amqp::Topology;
use hookwire_core::Config;
use hookwire_testkit::serve_child::seed_store;
use hookwire_testkit::tools::{prometheus, promtool, repo_root, run_ok};
use hookwire_testkit::{
    Broker, Prometheus, Receiver, Reply, ServeChild, new_subscription, test_config,
    unique_namespace,
};
use serde_json::Value;

use crate::write_config;

/// How long the alerts may take: a few scrapes and evaluations at 1 s, and the attempts
/// that open a circuit.
const WAIT: Duration = Duration::from_secs(40);

/// The rule files as an operator loads them: `deploy/prometheus/*.yml`.
fn rule_files() -> Vec<PathBuf> {
    yml_files(&repo_root().join("deploy/prometheus"))
}

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .yml file in {}", dir.display());
    files
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    let checked = run_ok(
        Command::new(promtool())
            .args(["check", "rules"])
            .args(rule_files()),
    );
    assert_eq!(
        checked.matches("SUCCESS").count(),
        rule_files().len(),
        "{checked}"
    );
    let tests = yml_files(&repo_root().join("deploy/prometheus/tests"));
    let tested = run_ok(
        Command::new(promtool())
            .args(["test", "rules"])
            .args(&tests),
    );
    assert_eq!(tested.matches("SUCCESS").count(), tests.len(), "{tested}");
}

/// A `serve` child in a directory of its own, with the test config changed by `adjust`.
/// Fields drop in order: the child (and its log's tail, on a failure) before the directory.
struct Node {
    serve: ServeChild,
    config: Config,
    _dir: tempfile::TempDir,
}

impl Node {
    fn spawn(adjust: impl FnOnce(&mut Config), seed: &[hookwire_core::Subscription]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&unique_namespace(), &dir.path().join("store"));
        adjust(&mut config);
        seed_store(&config, seed).expect("seed");
        let path = write_config(&config, dir.path());
        let binary = Path::new(env!("CARGO_BIN_EXE_hookwire"));
        let serve = ServeChild::spawn(binary, &path, &dir.path().join("serve.log"), &[])
            .expect("serve starts");
        Self {
            serve,
            config,
            _dir: dir,
        }
    }
}

/// `instance`'s alerts named `name`, and their states.
fn alerts_of(alerts: &[Value], name: &str, instance: SocketAddr) -> Vec<Value> {
    alerts
        .iter()
        .filter(|a| {
            a["labels"]["alertname"] == name && a["labels"]["instance"] == instance.to_string()
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_raises_the_shipped_alerts_of_a_failing_webhook_and_a_missing_broker() {
    let prometheus_binary = prometheus();
    let failing = Receiver::start(|_, _| Reply::status(500)).await;
    let subscription = new_subscription("acme", &failing.url(), &["report_run_completed"]);
    let mut working = Node::spawn(|_| {}, std::slice::from_ref(&subscription));
    let working_api = working
        .serve
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("serve consumes");
    // Nothing listens on the broker port of the second node: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port");
    let mut stranded = Node::spawn(
        |c| c.amqp.url = format!("amqp://guest:guest@{closed}/%2f"),
        &[],
    );
    let stranded_api = stranded
        .serve
        .wait_started(Duration::from_secs(60))
        .await
        .expect("serve starts without its broker");

    let prometheus = Prometheus::start(
        &prometheus_binary,
        &[working_api, stranded_api],
        &rule_files(),
    )
    .await
    .expect("prometheus starts");
    // Both scraped, and the dead letters seen at 0 before any arrives: the alert needs
    // the increase.
    let exported_at_zero = format!(
        "hookwire_dead_letters_total{{instance=\"{working_api}\",reason=\"missing_org\"}} == 0"
    );
    seen_within(
        &prometheus,
        "both nodes scraped, the dead letters at 0",
        || async {
            let up = prometheus.query("up == 1").await.ok()?;
            let zero = prometheus.query(&exported_at_zero).await.ok()?;
            (up.len() == 2 && zero.len() == 1).then_some(())
        },
    )
    .await;

    // Five events each failing three times open the webhook's circuit (10 failures in
    // 30 s); an event without an organization is dead-lettered.
    let producer = crate::producer_for(&working.config).await;
    crate::publish_runs(&producer, 0..5).await;
    let broker = Broker::connect().await;
    broker
        .publish_raw(
            &working.config.amqp.namespace,
            "report_run_completed",
            br#"{"event":"report_run_completed"}"#,
            lapin::BasicProperties::default().with_message_id("no-org".into()),
        )
        .await;

    let expected = [
        ("HookwireWebhookFailing", working_api),
        ("HookwireDeadLetters", working_api),
        ("HookwireBrokerUnreachable", stranded_api),
        ("HookwireNodeNotReady", stranded_api),
    ];
    let alerts = seen_within(&prometheus, "the four alerts at least pending", || async {
        let alerts = prometheus.alerts().await.ok()?;
        expected
            .iter()
            .all(|(name, instance)| !alerts_of(&alerts, name, *instance).is_empty())
            .then_some(alerts)
    })
    .await;
    let state = |name: &str, instance: SocketAddr| -> Vec<String> {
        alerts_of(&alerts, name, instance)
            .iter()
            .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Shipped `for:` durations of 15 and 5 minutes: pending. The dead-letter alert has
    // none: firing at once, with its reason.
    assert_eq!(state("HookwireWebhookFailing", working_api), ["pending"]);
    assert_eq!(state("HookwireNodeNotReady", stranded_api), ["pending"]);
    let broker_alert = state("HookwireBrokerUnreachable", stranded_api);
    assert!(
        broker_alert == ["pending"] || broker_alert == ["firing"],
        "{broker_alert:?}"
    );
    // One alert per reason: the event without an organization, and the deliveries that
    // exhausted their schedule before the circuit opened, if any did.
    let dead = alerts_of(&alerts, "HookwireDeadLetters", working_api);
    let reasons: BTreeSet<&str> = dead
        .iter()
        .map(|a| a["labels"]["reason"].as_str().unwrap_or_default())
        .collect();
    assert!(reasons.contains("missing_org"), "{dead:?}");
    assert!(
        reasons.is_subset(&BTreeSet::from(["missing_org", "exhausted"])),
        "{dead:?}"
    );
    for alert in &dead {
        assert_eq!(alert["state"], "firing", "{alert}");
        assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
        assert_eq!(
            alert["annotations"]["runbook_url"],
            "docs/operations.md#hookwiredeadletters"
        );
    }
    let circuit = &alerts_of(&alerts, "HookwireWebhookFailing", working_api)[0];
    assert_eq!(
        circuit["annotations"]["summary"],
        format!("1 webhook(s) failing on {working_api}")
    );
    // Quiet where nothing is wrong: the working node is connected and ready, the
    // stranded one has no webhook to fail, and both are up.
    for (name, instance) in [
        ("HookwireBrokerUnreachable", working_api),
        ("HookwireNodeNotReady", working_api),
        ("HookwireWebhookFailing", stranded_api),
        ("HookwireNodeDown", working_api),
        ("HookwireNodeDown", stranded_api),
    ] {
        assert_eq!(
            state(name, instance),
            Vec::<String>::new(),
            "{name} on {instance}"
        );
    }
    assert!(
        failing.requests().len() >= 10,
        "{} attempts",
        failing.requests().len()
    );

    // The gauges behind them, as Prometheus stored them.
    let value = |rows: &[(Value, f64)], instance: SocketAddr| {
        rows.iter()
            .find(|(labels, _)| labels["instance"] == instance.to_string())
            .map(|(_, v)| *v)
    };
    let ready = prometheus.query("hookwire_ready").await.expect("query");
    assert_eq!(value(&ready, working_api), Some(1.0));
    assert_eq!(value(&ready, stranded_api), Some(0.0));
    let connected = prometheus
        .query("hookwire_broker_connected")
        .await
        .expect("query");
    assert_eq!(value(&connected, working_api), Some(1.0));
    assert_eq!(value(&connected, stranded_api), Some(0.0));
    let budget = prometheus
        .query("hookwire_payload_archive_max_bytes")
        .await
        .expect("query");
    assert_eq!(
        value(&budget, working_api),
        Some(working.config.store.payload_max_bytes as f64)
    );

    rules_are_loaded_and_documented(&prometheus).await;

    drop(prometheus);
    producer.close().await.expect("close");
    working
        .serve
        .terminate(Duration::from_secs(30))
        .await
        .expect("serve stops");
    stranded
        .serve
        .terminate(Duration::from_secs(30))
        .await
        .expect("the stranded serve stops");
    let channel = broker.connection().create_channel().await.expect("channel");
    Topology::of_config(&working.config)
        .expect("schedule")
        .delete(&channel)
        .await
        .expect("namespace deleted");
}

/// Polls `check` until it returns `Some` within [`WAIT`]; fails with what Prometheus
/// scraped and alerts on otherwise.
async fn seen_within<T, F, Fut>(prometheus: &Prometheus, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            let up = prometheus.query("up").await;
            let alerts = prometheus.alerts().await;
            panic!("timed out after {WAIT:?} waiting for {what}; up: {up:?}; alerts: {alerts:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every shipped rule loaded and evaluated without error; every alert has a summary and
/// a runbook at a heading of docs/operations.md; every metric a rule reads is in its
/// metrics table.
async fn rules_are_loaded_and_documented(prometheus: &Prometheus) {
    let rules = prometheus.rules().await.expect("rules");
    let operations = std::fs::read_to_string(repo_root().join("docs/operations.md"))
        .expect("docs/operations.md");
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| {
            l.strip_prefix("#")
                .map(|h| h.trim_start_matches('#').trim())
        })
        .map(heading_anchor)
        .collect();
    let documented: BTreeSet<&str> = operations
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    let alerting = rules.iter().filter(|r| r["type"] == "alerting").count();
    assert!(alerting >= 10, "{alerting} alerting rules: {rules:?}");
    for rule in &rules {
        let name = &rule["name"];
        assert_ne!(rule["health"], "err", "{name}: {}", rule["lastError"]);
        if rule["type"] == "alerting" {
            let annotations = &rule["annotations"];
            assert!(annotations["summary"].is_string(), "{name} has no summary");
            let runbook = annotations["runbook_url"].as_str().unwrap_or_default();
            let anchor = runbook
                .strip_prefix("docs/operations.md#")
                .unwrap_or_else(|| {
                    panic!("{name}'s runbook {runbook:?} is not in docs/operations.md")
                });
            assert!(
                anchors.contains(anchor),
                "{name}: no heading #{anchor} in docs/operations.md"
            );
        }
        let query = rule["query"].as_str().expect("a query");
        for metric in metric_names(query) {
            let base = ["_count", "_sum", "_bucket"]
                .iter()
                .find_map(|s| metric.strip_suffix(s).filter(|b| documented.contains(b)))
                .unwrap_or(&metric);
            assert!(
                documented.contains(base),
                "{name} reads {metric}, which docs/operations.md's metrics table does not list"
            );
        }
    }
}

/// The `hookwire_…` metric names in a PromQL expression (recording rules' `hookwire:…`
/// names excluded).
fn metric_names(query: &str) -> BTreeSet<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("hookwire_"))
        .map(str::to_owned)
        .collect()
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens.
fn heading_anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[test]
fn anchors_and_metric_names_are_read_as_github_and_promql_do() {
    assert_eq!(heading_anchor("HookwireNodeDown"), "hookwirenodedown");
    assert_eq!(
        heading_anchor("Keys derived from `secrets.key`"),
        "keys-derived-from-secretskey"
    );
    assert_eq!(
        metric_names(
            "sum by (job) (rate(hookwire_attempt_duration_seconds_count{outcome!=\"delivered\"}[5m])) / hookwire:attempts:rate5m"
        ),
        BTreeSet::from(["hookwire_attempt_duration_seconds_count".to_owned()])
    );
}
