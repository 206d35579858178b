//! Backup and restore as an operator runs them: a hot export of a running, delivering
//! `serve` (`hookwire admin export`), restored into a fresh store of another namespace
//! (`hookwire store restore`) where a new `serve` answers and delivers alike; and what the
//! export route and the restore refuse.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use hookwire_amqp::{OutgoingEvent, Producer, Topology};
use hookwire_core::config::OrgToken;
use hookwire_core::{Config, PublicKey, Secret};
use hookwire_store::Store;
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::serve_child::seed_store;
use hookwire_testkit::{
    Broker, Receiver, Recorded, Reply, ServeChild, eventually, new_subscription, test_config,
    unique_namespace,
};
use serde_json::{Value, json};

use crate::{hookwire, write_config};

const WAIT: Duration = Duration::from_secs(60);
/// A configured token limited to `acme`.
const ACME_TOKEN: &str = "acme-static-token-0123456789";
/// Another `secrets.key` than the test config's.
const OTHER_KEY: &str = "YW5vdGhlci1rZXktYW5vdGhlci1rZXktYW5vdGhlciE=";

/// One namespace with a `serve` child: its config, declared topology and a producer.
struct Node {
    path: PathBuf,
    dir: PathBuf,
    topology: Topology,
    channel: lapin::Channel,
    producer: Producer,
}

impl Node {
    async fn new(broker: &Broker, dir: &Path, name: &str) -> Self {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let mut config = test_config(&unique_namespace(), &dir.join("store"));
        config.api.org_tokens = vec![OrgToken {
            token: ACME_TOKEN.into(),
            orgs: vec!["acme".into()],
            read_only: false,
        }];
        let path = write_config(&config, &dir);
        let topology = Topology::of_config(&config).expect("schedule");
        let channel = broker.connection().create_channel().await.expect("channel");
        topology.declare(&channel).await.expect("declare");
        let producer = crate::producer_for(&config).await;
        Self {
            path,
            dir,
            topology,
            channel,
            producer,
        }
    }

    async fn serve(&self) -> (ServeChild, SocketAddr) {
        let binary = Path::new(env!("CARGO_BIN_EXE_hookwire"));
        let mut serve = ServeChild::spawn(binary, &self.path, &self.dir.join("serve.log"), &[])
            .expect("serve starts");
        let api = serve.wait_ready(WAIT).await.expect("serve is ready");
        (serve, api)
    }

    async fn publish(&self, org: &str, id: &str) {
        let data = serde_json::from_value(
            json!({"report_run_url": format!("https://mode.test/runs/{id}")}),
        )
        .expect("a map");
        let event = OutgoingEvent {
            org: org.into(),
            event_type: "report_run_completed".into(),
            id: id.into(),
            data,
        };
        self.producer.publish(&event).await.expect("publish");
    }

    async fn finish(self) {
        self.producer.close().await.expect("close");
        self.topology.delete(&self.channel).await.expect("cleanup");
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn call(
    api: SocketAddr,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http().request(method, format!("http://{api}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(api: SocketAddr, path: &str) -> Value {
    let (status, body) = call(api, Some(API_TOKEN), reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn create(api: SocketAddr, org: &str, query: &str, body: Value) -> Value {
    let path = format!("/v1/orgs/{org}/webhooks{query}");
    let (status, created) = call(
        api,
        Some(API_TOKEN),
        reqwest::Method::POST,
        &path,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "create: {created}");
    created
}

/// An organization's webhooks without what each node judges by its own deliveries (its
/// circuit and health), which move on after the export.
async fn webhooks(api: SocketAddr, org: &str) -> Vec<Value> {
    let list = get(api, &format!("/v1/orgs/{org}/webhooks")).await;
    list["webhooks"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|w| {
            let mut w = w.clone();
            for local in [
                "circuit",
                "consecutive_failures",
                "failing_since",
                "last_success_at",
            ] {
                w.as_object_mut().expect("an object").remove(local);
            }
            w
        })
        .collect()
}

async fn dead_letter_ids(api: SocketAddr) -> Vec<String> {
    let list = get(api, "/v1/orgs/acme/dead-letters?limit=500").await;
    list["dead_letters"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| d["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Runs `hookwire` with `args` off the async workers.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        hookwire()
            .args(&args)
            .env_remove("HOOKWIRE_API_TOKEN")
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .expect("join")
    .expect("hookwire runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one request of `received` for event `id`, checked to be signed by `verify`.
fn delivered<'a>(received: &'a [Recorded], id: &str) -> &'a Recorded {
    received
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains(&format!("/runs/{id}\"")))
        .unwrap_or_else(|| panic!("no delivery of {id}"))
}

fn timestamp(r: &Recorded) -> u64 {
    r.header("webhook-timestamp").parse().expect("a timestamp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_export_restores_into_a_fresh_node_that_delivers_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::connect().await;
    let source = Node::new(&broker, dir.path(), "source").await;
    let (good, refusing) = (
        Receiver::ok().await,
        Receiver::start(|_, _| Reply::status(400)).await,
    );
    let (mut serve, api) = source.serve().await;

    // Two organizations: acme signs with its secret, globex with Ed25519 too and a secret
    // header; acme's second webhook is refused by its receiver, so its events die.
    let acme = create(
        api,
        "acme",
        "",
        json!({"url": good.url(), "description": "signed", "events": ["report_run_completed"]}),
    )
    .await;
    let globex = create(
        api,
        "globex",
        "",
        json!({"url": good.url(), "description": "ed25519", "events": ["report_run_completed"],
            "ed25519": true, "secret_headers": {"authorization": "Bearer restored"}}),
    )
    .await;
    create(api, "acme", "?verify=false", json!({"url": refusing.url(), "description": "refused", "events": ["report_run_completed"]})).await;
    source.publish("acme", "evt-0").await;
    let first_letter = eventually(WAIT, "a dead letter archived", || async {
        dead_letter_ids(api).await.first().cloned()
    })
    .await;

    // The export runs while serve delivers a stream of events.
    let publishing = async {
        for i in 1..=30 {
            source.publish("acme", &format!("evt-{i}")).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let export = dir.path().join("backup.jsonl");
    let exporting = run(vec![
        "admin".into(),
        "export".into(),
        "--json".into(),
        "--api".into(),
        format!("http://{api}"),
        "--token".into(),
        API_TOKEN.into(),
        "--out".into(),
        export.display().to_string(),
    ]);
    let ((), out) = tokio::join!(publishing, exporting);
    assert!(out.status.success(), "admin export: {}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the summary goes to stderr");
    let summary: Value = serde_json::from_slice(&out.stderr).expect("the summary alone, as JSON");
    assert_eq!(summary["webhooks"], 3, "{summary}");
    let exported_letters = summary["dead_letters"].as_u64().expect("a count");
    assert!(exported_letters >= 1, "{summary}");
    let lines = std::fs::read_to_string(&export).expect("the export");
    assert_eq!(
        lines.lines().count() as u64,
        3 + exported_letters,
        "{lines}"
    );
    assert!(!dir.path().join("backup.jsonl.partial").exists());
    // Two test events and 31 events.
    eventually(WAIT, "every event delivered", || async {
        (good.answered().len() >= 2 + 31).then_some(())
    })
    .await;

    // An organization's token may not export, and no token is refused before anything.
    let refused = run(vec![
        "admin".into(),
        "export".into(),
        "--api".into(),
        format!("http://{api}"),
        "--token".into(),
        ACME_TOKEN.into(),
        "--out".into(),
        dir.path().join("refused.jsonl").display().to_string(),
    ])
    .await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("(forbidden, HTTP 403)"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!dir.path().join("refused.jsonl").exists());
    let (status, body) = call(
        api,
        None,
        reqwest::Method::GET,
        "/v1/admin/store/export",
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let raw = http()
        .get(format!("http://{api}/v1/admin/store/export"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(raw.headers()["content-type"], "application/x-ndjson");

    let expected = (webhooks(api, "acme").await, webhooks(api, "globex").await);
    assert!(serve.terminate(WAIT).await.expect("stops").success());

    // Restored into a fresh store of another namespace, with the same secrets.key.
    let target = Node::new(&broker, dir.path(), "target").await;
    let restore = vec![
        "store".into(),
        "restore".into(),
        "--json".into(),
        "--config".into(),
        target.path.display().to_string(),
        "--in".into(),
        export.display().to_string(),
    ];
    let out = run(restore.clone()).await;
    assert!(out.status.success(), "restore: {}", text(&out.stderr));
    let restored: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(restored["webhooks"], 3, "{restored}");
    assert_eq!(restored["dead_letters"], exported_letters, "{restored}");
    let again = run(restore).await;
    assert!(!again.status.success(), "a second restore is refused");
    assert!(
        text(&again.stderr).contains("already holds webhooks"),
        "{}",
        text(&again.stderr)
    );

    let (mut serve, api) = target.serve().await;
    assert_eq!(
        (webhooks(api, "acme").await, webhooks(api, "globex").await),
        expected
    );
    let letters = dead_letter_ids(api).await;
    assert_eq!(letters.len() as u64, exported_letters);
    assert!(letters.contains(&first_letter), "{letters:?}");

    // Deliveries are signed with the original secret and Ed25519 key, and carry the
    // secret header.
    let before = good.requests().len();
    target.publish("acme", "evt-restored").await;
    target.publish("globex", "evt-globex").await;
    let received = good.wait_for(before + 2, WAIT).await;
    let to_acme = delivered(&received[before..], "evt-restored");
    let secret = Secret::parse(acme["secret"].as_str().expect("a secret")).expect("whsec");
    secret
        .verify(
            to_acme.header("webhook-id"),
            timestamp(to_acme),
            &to_acme.body,
            to_acme.header("webhook-signature"),
        )
        .expect("signed with the original secret");
    let to_globex = delivered(&received[before..], "evt-globex");
    let public =
        PublicKey::parse(globex["public_keys"][0]["key"].as_str().expect("a key")).expect("whpk");
    public
        .verify(
            to_globex.header("webhook-id"),
            timestamp(to_globex),
            &to_globex.body,
            to_globex.header("webhook-signature"),
        )
        .expect("signed with the original Ed25519 key");
    assert_eq!(to_globex.header("authorization"), "Bearer restored");

    // The dead letter replays: its event reaches the refusing receiver again.
    let refused_before = refusing.requests().len();
    let (status, replay) = call(
        api,
        Some(API_TOKEN),
        reqwest::Method::POST,
        "/v1/orgs/acme/dead-letters/replay",
        Some(json!({"ids": [first_letter]})),
    )
    .await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["replayed"], json!([first_letter]), "{replay}");
    let replayed = refusing.wait_for(refused_before + 1, WAIT).await;
    assert!(
        String::from_utf8_lossy(&replayed[refused_before].body).contains("/runs/evt-0\""),
        "the replayed event is evt-0"
    );
    assert!(serve.terminate(WAIT).await.expect("stops").success());
    target.finish().await;
    source.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_copy_of_the_store_directory_keeps_the_attempt_log_and_the_kept_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::connect().await;
    let source = Node::new(&broker, dir.path(), "source").await;
    let good = Receiver::ok().await;
    let (mut serve, api) = source.serve().await;
    let hook = create(
        api,
        "acme",
        "",
        json!({"url": good.url(), "events": ["report_run_completed"]}),
    )
    .await;
    let attempts_path = format!(
        "/v1/orgs/acme/webhooks/{}/attempts",
        hook["id"].as_str().expect("an id")
    );
    for i in 0..3 {
        source.publish("acme", &format!("evt-cold-{i}")).await;
    }
    let expected_attempts = eventually(WAIT, "three attempts logged", || async {
        let page = get(api, &attempts_path).await;
        let delivered = page["attempts"]
            .as_array()?
            .iter()
            .filter(|a| {
                a["outcome"] == "delivered"
                    && a["event_id"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("evt-cold-"))
            })
            .count();
        (delivered >= 3).then_some(page)
    })
    .await;
    let expected_webhooks = webhooks(api, "acme").await;
    assert!(serve.terminate(WAIT).await.expect("stops").success());

    // The operator's copy: `cp -a` of the whole directory, serve stopped.
    let target = Node::new(&broker, dir.path(), "target").await;
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.path().join("source/store"))
        .arg(dir.path().join("target/store"))
        .output()
        .expect("cp runs");
    assert!(out.status.success(), "cp -a: {}", text(&out.stderr));

    let (mut serve, api) = target.serve().await;
    assert_eq!(webhooks(api, "acme").await, expected_webhooks);
    assert_eq!(get(api, &attempts_path).await, expected_attempts);
    // The kept body of an event received before the copy is resent from the copy.
    let before = good.requests().len();
    let (status, resent) = call(
        api,
        Some(API_TOKEN),
        reqwest::Method::POST,
        &format!(
            "/v1/orgs/acme/webhooks/{}/resend",
            hook["id"].as_str().expect("an id")
        ),
        Some(json!({"event_id": "evt-cold-1"})),
    )
    .await;
    assert_eq!(status, 200, "{resent}");
    let received = good.wait_for(before + 1, WAIT).await;
    delivered(&received[before..], "evt-cold-1");
    assert!(serve.terminate(WAIT).await.expect("stops").success());
    target.finish().await;
    source.finish().await;
}

/// A store seeded with two webhooks and its cold export (`store export`).
fn exported(dir: &Path) -> (Config, PathBuf) {
    let config = test_config(&unique_namespace(), &dir.join("source"));
    let subs = [
        new_subscription("acme", "http://127.0.0.1:9/hook", &["report_created"]),
        new_subscription("globex", "http://127.0.0.1:9/hook", &["report_created"]),
    ];
    seed_store(&config, &subs).expect("seeded");
    crate::wait_unlocked(&config.store.path);
    let path = write_config(&config, dir);
    let export = dir.join("export.jsonl");
    let out = hookwire()
        .args(["store", "export", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&export)
        .output()
        .expect("export runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    (config, export)
}

/// Runs `store restore` of `input` with `config` (written to `dir`); its stderr on
/// failure, panicking if it succeeded.
fn restore_refused(config: &Config, dir: &Path, input: &Path) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let path = write_config(config, dir);
    let out = hookwire()
        .args(["store", "restore", "--config"])
        .arg(&path)
        .arg("--in")
        .arg(input)
        .output()
        .expect("restore runs");
    assert!(
        !out.status.success(),
        "restore must refuse: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// Asserts that the store of `config` holds nothing: a refused restore wrote nothing.
fn still_empty(config: &Config) {
    crate::wait_unlocked(&config.store.path);
    let store = Store::open(
        &config.store.path,
        1 << 20,
        &config.secrets_key().expect("key"),
    )
    .expect("opens");
    assert!(
        !store.holds_anything().expect("readable"),
        "a refused restore wrote nothing"
    );
}

#[test]
fn a_restore_refuses_what_it_cannot_restore_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (source, export) = exported(dir.path());
    let whole = std::fs::read_to_string(&export).expect("export");
    let lines: Vec<&str> = whole.lines().collect();
    assert_eq!(lines.len(), 2, "{whole}");
    let fresh = |name: &str| test_config(&unique_namespace(), &dir.path().join(name).join("store"));

    // A store that holds webhooks already: its own source.
    let stderr = restore_refused(&source, &dir.path().join("own"), &export);
    assert!(
        stderr.contains("already holds webhooks or dead letters"),
        "{stderr}"
    );

    // A line cut short, then a garbled one: named by number, nothing written.
    for (n, damaged) in [
        (
            2,
            format!("{}\n{}\n", lines[0], &lines[1][..lines[1].len() / 2]),
        ),
        (1, format!("{{\"id\": garbled\n{}\n", lines[1])),
    ] {
        let input = dir.path().join(format!("damaged-{n}.jsonl"));
        std::fs::write(&input, damaged).expect("write");
        let target = fresh(&format!("damaged-{n}"));
        let stderr = restore_refused(&target, &dir.path().join(format!("damaged-{n}")), &input);
        assert!(
            stderr.contains(&format!("line {n}: not an entry of a store export")),
            "{stderr}"
        );
        still_empty(&target);
    }

    // Another secrets.key: the sealed secrets do not open; the message names the key.
    let mut other_key = fresh("other-key");
    other_key.secrets.key = OTHER_KEY.into();
    let stderr = restore_refused(&other_key, &dir.path().join("other-key"), &export);
    assert!(
        stderr.contains("line 1: its webhook's secrets do not open under secrets.key"),
        "{stderr}"
    );

    // A target policy that refuses the webhooks' addresses, as the API would.
    let mut strict = fresh("strict");
    strict.delivery.allowed_cidrs = Vec::new();
    strict.delivery.only_allowed_cidrs = false;
    let stderr = restore_refused(&strict, &dir.path().join("strict"), &export);
    assert!(stderr.contains("line 1: refused:"), "{stderr}");
    still_empty(&strict);

    // A replicated node is restored through the changes stream instead.
    let mut replicated = fresh("replicated");
    replicated.replication.enabled = true;
    let stderr = restore_refused(&replicated, &dir.path().join("replicated"), &export);
    assert!(stderr.contains("hookwire store import"), "{stderr}");

    // Nothing to restore.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").expect("write");
    let stderr = restore_refused(&fresh("nothing"), &dir.path().join("nothing"), &empty);
    assert!(stderr.contains("nothing to restore"), "{stderr}");
}
