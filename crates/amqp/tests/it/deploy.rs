//! The files in `deploy/` agree with hookwire: the RabbitMQ definitions load into a real
//! broker and hookwire's own topology declaration then succeeds against them (no 406
//! PRECONDITION_FAILED), and the example configuration parses and validates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hookwire_amqp::Topology;
use hookwire_amqp::lapin::options::QueueDeclareOptions;
use hookwire_amqp::lapin::types::{AMQPValue, FieldTable, LongString};
use hookwire_amqp::lapin::{Channel, Connection};
use hookwire_core::Config;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn definitions() -> Value {
    serde_json::from_str(&read("deploy/rabbitmq/definitions.json"))
        .expect("deploy/rabbitmq/definitions.json is JSON")
}

/// `rabbitmqctl ARGS`, which must succeed; its stdout.
fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `rabbitmqctl list_… -p VHOST -q COLUMNS --formatter json`, parsed.
fn list(what: &str, vhost: &str, columns: &[&str]) -> Vec<Value> {
    let mut args = vec![what, "-p", vhost, "-q"];
    args.extend_from_slice(columns);
    args.extend_from_slice(&["--formatter", "json"]);
    let text = rabbitmqctl(&args);
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

/// A vhost of its own, deleted when the test ends, however it ends.
struct ScratchVhost {
    name: String,
}

impl ScratchVhost {
    fn create() -> Self {
        let name = format!("hwtest-deploy-{}", uuid::Uuid::now_v7().simple());
        rabbitmqctl(&["add_vhost", &name]);
        let vhost = Self { name };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
        vhost
    }

    fn url(&self) -> String {
        let encoded: String = self
            .name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("amqp://guest:guest@127.0.0.1:5672/{encoded}")
    }

    /// A connection to the vhost as `guest`, with a channel on it.
    async fn connect(&self, name: &str) -> (Connection, Channel) {
        let connection = hookwire_amqp::connect(&self.url(), name)
            .await
            .expect("connect to the scratch vhost");
        let channel = connection.create_channel().await.expect("channel");
        (connection, channel)
    }

    /// The names of what `rabbitmqctl WHAT` lists in the vhost (`list_queues`, …).
    fn names(&self, what: &str) -> BTreeSet<String> {
        // `list_policies` takes no columns; it always shows the name.
        let columns: &[&str] = if what == "list_policies" {
            &[]
        } else {
            &["name"]
        };
        list(what, &self.name, columns)
            .iter()
            .map(|v| str_of(v, "name").to_owned())
            .collect()
    }
}

impl Drop for ScratchVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// A temporary file, removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `defs` retargeted to a fresh scratch vhost and imported there with `rabbitmqctl
/// import_definitions`, once every queue and policy of them is there (the import may
/// finish after rabbitmqctl returns); the vhost, what was imported and its file, kept
/// until the test ends.
async fn imported_into_scratch_vhost(defs: Value) -> (ScratchVhost, Value, TempFile) {
    let vhost = ScratchVhost::create();
    let defs = retargeted(defs, &vhost.name);
    let file = TempFile(std::env::temp_dir().join(format!("{}.json", vhost.name)));
    std::fs::write(&file.0, serde_json::to_vec_pretty(&defs).expect("JSON")).expect("write");
    rabbitmqctl(&["import_definitions", file.0.to_str().expect("UTF-8 path")]);
    let wanted_queues = names_in(&defs, "queues");
    let wanted_policies = names_in(&defs, "policies");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queues = vhost.names("list_queues");
        let policies = vhost.names("list_policies");
        if queues == wanted_queues && policies == wanted_policies {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the import did not complete: queues {queues:?}, policies {policies:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (vhost, defs, file)
}

/// Asserts that the broker refused what gave `result` with the AMQP error `code`
/// (`ACCESS_REFUSED`, `PRECONDITION_FAILED`).
fn refused<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>, code: &str, what: &str) {
    let refused = result.expect_err(what);
    assert!(format!("{refused:?}").contains(code), "{what}: {refused:?}");
}

/// The definitions with every vhost renamed to `vhost`.
fn retargeted(mut defs: Value, vhost: &str) -> Value {
    fn walk(v: &mut Value, vhost: &str) {
        match v {
            Value::Object(map) => {
                if map.contains_key("vhost") {
                    map.insert("vhost".into(), vhost.into());
                }
                map.values_mut().for_each(|v| walk(v, vhost));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, vhost)),
            _ => {}
        }
    }
    walk(&mut defs, vhost);
    for v in defs["vhosts"].as_array_mut().into_iter().flatten() {
        v["name"] = vhost.into();
    }
    defs
}

/// hookwire's tiers for a configuration: the schedule's distinct delays plus `defer_delay`.
fn tiers(config: &Config) -> Vec<Duration> {
    let plan = config.retry_plan().expect("valid schedule");
    plan.tiers().iter().copied().collect()
}

/// Every queue name hookwire declares for `topology`.
fn queue_names(topology: &Topology) -> BTreeSet<String> {
    let n = &topology.names;
    let mut names: BTreeSet<String> = [
        n.events_queue(),
        n.unrouted_queue(),
        n.deliveries_queue(),
        n.dead_queue(),
    ]
    .into_iter()
    .collect();
    names.extend(topology.tiers.iter().map(|t| n.retry_queue(*t)));
    names
}

fn names_in(defs: &Value, section: &str) -> BTreeSet<String> {
    defs[section]
        .as_array()
        .unwrap_or_else(|| panic!("definitions lack `{section}`"))
        .iter()
        .map(|v| str_of(v, "name").to_owned())
        .collect()
}

#[test]
fn definitions_cover_exactly_the_default_topology() {
    let defs = definitions();
    let config = Config::defaults();
    let topology = Topology::new(&config.amqp.namespace, tiers(&config));
    assert_eq!(names_in(&defs, "queues"), queue_names(&topology));
    let n = &topology.names;
    let exchanges: BTreeSet<String> = [
        n.events_exchange(),
        n.unrouted_exchange(),
        n.work_exchange(),
        n.dead_letter_exchange(),
    ]
    .into_iter()
    .collect();
    assert_eq!(names_in(&defs, "exchanges"), exchanges);
    assert!(
        defs.get("users").is_none() && defs.get("permissions").is_none(),
        "the definitions must carry no users (and so no passwords) and no permissions"
    );
    // Everything lives in the vhost that deploy/hookwire.toml connects to.
    let vhosts = names_in(&defs, "vhosts");
    assert_eq!(vhosts, BTreeSet::from(["hookwire".to_owned()]));
    let deploy = deploy_config();
    assert!(
        deploy.amqp.url.ends_with("/hookwire"),
        "deploy/hookwire.toml must use the vhost of the definitions: {}",
        deploy.amqp.url
    );
}

#[tokio::test]
async fn definitions_load_and_hookwire_declares_against_them() {
    let (vhost, defs, _file) = imported_into_scratch_vhost(definitions()).await;

    // hookwire's declaration, exactly as `serve` runs it with the default configuration.
    let config = Config::defaults();
    let topology = Topology::new(&config.amqp.namespace, tiers(&config));
    let (connection, channel) = vhost.connect("hwtest-deploy").await;
    topology
        .declare(&channel)
        .await
        .expect("hookwire declares its topology over the imported definitions without a 406");

    // hookwire added nothing: the definitions hold all of its queues and bindings.
    assert_eq!(vhost.names("list_queues"), queue_names(&topology));
    let binding = |b: &Value, src: &str, dst: &str, key: &str| {
        (
            str_of(b, src).to_owned(),
            str_of(b, dst).to_owned(),
            str_of(b, key).to_owned(),
        )
    };
    let bound: BTreeSet<_> = list(
        "list_bindings",
        &vhost.name,
        &["source_name", "destination_name", "routing_key"],
    )
    .iter()
    .filter(|b| !str_of(b, "source_name").is_empty())
    .map(|b| binding(b, "source_name", "destination_name", "routing_key"))
    .collect();
    let in_file: BTreeSet<_> = defs["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .map(|b| binding(b, "source", "destination", "routing_key"))
        .collect();
    assert_eq!(bound, in_file);

    // The policies are in force as written.
    let live = list("list_policies", &vhost.name, &[]);
    for policy in defs["policies"].as_array().expect("policies") {
        let name = str_of(policy, "name");
        let found = live
            .iter()
            .find(|p| str_of(p, "name") == name)
            .unwrap_or_else(|| panic!("policy {name} missing: {live:?}"));
        assert_eq!(found["pattern"], policy["pattern"], "{name}");
        assert_eq!(found["apply-to"], policy["apply-to"], "{name}");
        let definition = match &found["definition"] {
            Value::String(text) => serde_json::from_str(text).expect("definition JSON"),
            other => other.clone(),
        };
        assert_eq!(definition, policy["definition"], "{name}");
    }

    // The agreement above means something: the broker does refuse an imported queue
    // redeclared with other arguments.
    let other = connection.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(5));
    let redeclared = other
        .queue_declare(
            topology.names.events_queue().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await;
    refused(
        redeclared,
        "PRECONDITION_FAILED",
        "inequivalent arguments are refused",
    );
    let _ = connection.close(200, "done".into()).await;
}

/// deploy/hookwire.toml over the embedded defaults, key by key, as `--config` layers it.
fn deploy_config() -> Config {
    let mut merged: toml::Table =
        toml::from_str(hookwire_core::config::DEFAULT_CONFIG_TOML).expect("defaults");
    let deploy: toml::Table =
        toml::from_str(&read("deploy/hookwire.toml")).expect("deploy/hookwire.toml is TOML");
    for (section, value) in deploy {
        match (merged.get_mut(&section), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(keys)) => into.extend(keys),
            // Unknown sections stay in, for deny_unknown_fields to name them.
            (_, value) => {
                merged.insert(section, value);
            }
        }
    }
    toml::Value::Table(merged)
        .try_into()
        .unwrap_or_else(|e| panic!("deploy/hookwire.toml: {e}"))
}

#[test]
fn example_config_parses_and_validates_with_a_key_from_the_environment() {
    let mut config = deploy_config();
    assert!(
        config.secrets.key.is_empty(),
        "the secrets key belongs in the env file, not in deploy/hookwire.toml"
    );
    assert!(
        config.api.tokens.is_empty(),
        "tokens belong in the env file"
    );
    let userinfo = config
        .amqp
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or("", |(userinfo, _)| userinfo);
    assert!(
        !userinfo.contains(':'),
        "no password in the broker URL: {}",
        config.amqp.url
    );
    assert_eq!(config.store.path, Path::new("/var/lib/hookwire/store"));
    assert_eq!(config.api.listen, "127.0.0.1:8080");
    assert!(!config.delivery.allow_private_targets);
    // HOOKWIRE_SECRETS__KEY from /etc/hookwire/env.
    config.secrets.key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into();
    config.validate().expect("deploy/hookwire.toml is valid");
    // Same tiers as the defaults, so the definitions' retry queues are the ones it uses.
    let defaults = Config::defaults();
    assert_eq!(
        Topology::new(&config.amqp.namespace, tiers(&config)).tiers,
        Topology::new(&defaults.amqp.namespace, tiers(&defaults)).tiers
    );
}

#[test]
fn stop_timeouts_leave_room_for_the_graceful_shutdown() {
    let grace = deploy_config().delivery.shutdown_grace.as_secs();
    let unit = read("deploy/hookwire.service");
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("hookwire.service lacks {key}="))
            .trim()
            .to_owned()
    };
    let stop: u64 = setting("TimeoutStopSec").parse().expect("seconds");
    assert!(stop > grace, "TimeoutStopSec={stop} <= grace {grace}");
    assert_eq!(setting("KillSignal"), "SIGTERM");
    assert_eq!(setting("Restart"), "on-failure");
    assert_eq!(
        setting("ExecStart"),
        "/usr/local/bin/hookwire serve --config /etc/hookwire/hookwire.toml"
    );
    let compose = read("deploy/compose.yaml");
    let period: u64 = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period:"))
        .and_then(|v| v.trim().strip_suffix('s'))
        .expect("compose.yaml sets stop_grace_period in seconds")
        .parse()
        .expect("seconds");
    assert!(
        period > grace,
        "stop_grace_period={period}s <= grace {grace}"
    );
}

/// A broker user of its own, deleted when the test ends, however it ends.
struct ScratchUser {
    name: String,
    password: String,
}

impl ScratchUser {
    fn create() -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let user = Self {
            name: format!("hwtest-producer-{id}"),
            password: format!("pw-{id}"),
        };
        rabbitmqctl(&["add_user", &user.name, &user.password]);
        user
    }
}

impl Drop for ScratchUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.name])
            .output();
    }
}

/// A producer with the permissions of `deploy/rabbitmq/permissions.json` (their names
/// moved to a test namespace) may publish events and nothing else: not tasks on the work
/// exchange, which hookwire would sign and send, and no queue of its own.
#[tokio::test]
async fn a_producer_may_publish_events_only() {
    let permissions: Value =
        serde_json::from_str(&read("deploy/rabbitmq/permissions.json")).expect("JSON");
    assert_eq!(permissions["vhost"], "hookwire");
    let namespace = format!("hwtest-perm-{}", uuid::Uuid::now_v7().simple());
    let regex = |kind: &str| {
        str_of(&permissions["producer"], kind).replace("hookwire\\.", &format!("{namespace}\\."))
    };
    let config = Config::defaults();
    let topology = Topology::new(&namespace, tiers(&config));
    let admin = hookwire_amqp::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "hwtest-perm")
        .await
        .expect("connect as guest");
    let admin_channel = admin.create_channel().await.expect("channel");
    topology.declare(&admin_channel).await.expect("topology");

    let user = ScratchUser::create();
    rabbitmqctl(&[
        "set_permissions",
        "-p",
        "/",
        &user.name,
        &regex("configure"),
        &regex("write"),
        &regex("read"),
    ]);
    let url = format!("amqp://{}:{}@127.0.0.1:5672/%2f", user.name, user.password);
    let producer = hookwire_amqp::connect(&url, "hwtest-perm-producer")
        .await
        .expect("the producer connects");
    let publish = async |exchange: String, key: &str| {
        let publisher = hookwire_amqp::Publisher::open(&producer, Duration::from_secs(10))
            .await
            .expect("confirm channel");
        publisher
            .publish(
                &exchange,
                key,
                br#"{"event":"report_created","report_run_url":"u"}"#,
                hookwire_amqp::lapin::BasicProperties::default(),
            )
            .await
    };
    let n = &topology.names;
    publish(n.events_exchange(), "report_created")
        .await
        .expect("events may be published");
    publish(
        n.events_exchange(),
        "no_queue_is_bound_for_this_key_but_all_are",
    )
    .await
    .expect("and reach the events queue");
    refused(
        publish(n.work_exchange(), "deliver").await,
        "ACCESS_REFUSED",
        "tasks may not be published",
    );
    refused(
        publish(n.dead_letter_exchange(), "dead").await,
        "ACCESS_REFUSED",
        "dead letters may not be published",
    );
    // A refusal closes its channel: each check opens one.
    let channel = producer.create_channel().await.expect("channel");
    let sneaky = format!("{namespace}.sneaky");
    refused(
        channel
            .queue_declare(
                sneaky.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await,
        "ACCESS_REFUSED",
        "queues may not be declared",
    );
    let channel = producer.create_channel().await.expect("channel");
    refused(
        channel
            .basic_get(
                n.deliveries_queue().as_str().into(),
                hookwire_amqp::lapin::options::BasicGetOptions::default(),
            )
            .await,
        "ACCESS_REFUSED",
        "queues may not be read",
    );

    let _ = producer.close(200, "done".into()).await;
    let admin_channel = admin.create_channel().await.expect("channel");
    topology
        .delete(&admin_channel)
        .await
        .expect("namespace deleted");
    let _ = admin.close(200, "done".into()).await;
}

#[test]
fn the_broker_caps_the_message_size() {
    let conf = read("deploy/rabbitmq/rabbitmq.conf");
    let max: usize = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("max_message_size"))
        .and_then(|v| v.trim().strip_prefix('='))
        .expect("rabbitmq.conf sets max_message_size")
        .trim()
        .parse()
        .expect("bytes");
    let config = Config::defaults();
    assert!(max <= 16 << 20, "{max}");
    assert!(max >= config.delivery.max_event_bytes);
    assert!(max >= config.store.dead_letter_body_max_bytes);
}

fn cluster_definitions() -> Value {
    serde_json::from_str(&read("deploy/cluster/definitions.json"))
        .expect("deploy/cluster/definitions.json is JSON")
}

/// The cluster's definitions are the single broker's, with the replication arguments
/// hookwire declares with three URLs on every queue.
#[test]
fn cluster_definitions_add_only_the_replication_arguments() {
    let single = definitions();
    let mut cluster = cluster_definitions();
    for queue in cluster["queues"].as_array_mut().expect("queues") {
        let args = queue["arguments"].as_object_mut().expect("arguments");
        assert_eq!(
            args.remove("x-quorum-initial-group-size"),
            Some(Value::from(3)),
            "{queue}"
        );
        assert_eq!(
            args.remove("x-queue-leader-locator"),
            Some(Value::from(hookwire_amqp::topology::LEADER_LOCATOR)),
            "{queue}"
        );
    }
    assert_eq!(cluster, single);
    let config: Config = {
        let mut merged: toml::Table =
            toml::from_str(hookwire_core::config::DEFAULT_CONFIG_TOML).expect("defaults");
        let file: toml::Table = toml::from_str(&read("deploy/cluster/hookwire.toml"))
            .expect("deploy/cluster/hookwire.toml is TOML");
        for (section, value) in file {
            match (merged.get_mut(&section), value) {
                (Some(toml::Value::Table(into)), toml::Value::Table(keys)) => into.extend(keys),
                (_, value) => {
                    merged.insert(section, value);
                }
            }
        }
        // `amqp.urls` replaces the default `amqp.url`, as `serve` layers it.
        if let Some(toml::Value::Table(amqp)) = merged.get_mut("amqp") {
            amqp.remove("url");
        }
        toml::Value::Table(merged)
            .try_into()
            .unwrap_or_else(|e| panic!("deploy/cluster/hookwire.toml: {e}"))
    };
    config.amqp.validate().expect("valid [amqp]");
    assert_eq!(
        config.amqp.replication(),
        Some(3),
        "deploy/cluster/hookwire.toml must declare what the cluster's definitions hold"
    );
    assert!(config.replication.enabled);
}

/// hookwire with three URLs declares its topology over the cluster's definitions without
/// a 406 (a single broker takes a group size of 3; it has one member to give).
#[tokio::test]
async fn cluster_definitions_load_and_hookwire_declares_against_them() {
    let (vhost, _, _file) = imported_into_scratch_vhost(cluster_definitions()).await;
    let config = Config::defaults();
    let mut topology = Topology::new(&config.amqp.namespace, tiers(&config));
    topology.replication = Some(3);
    let (connection, channel) = vhost.connect("hwtest-deploy-cluster").await;
    topology
        .declare(&channel)
        .await
        .expect("hookwire declares its replicated topology over the cluster's definitions");
    // Without the replication arguments, the same declaration is refused: the check
    // above compared them.
    topology.replication = None;
    let other = connection.create_channel().await.expect("channel");
    refused(
        topology.declare(&other).await,
        "PRECONDITION_FAILED",
        "other replication arguments are refused",
    );
    let _ = connection.close(200, "done".into()).await;
}
