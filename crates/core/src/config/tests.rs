use super::*;

fn dev() -> Config {
    let mut c = Config::defaults();
    c.secrets.key = "ZGV2LWtleS1kZXYta2V5LWRldi1rZXktZGV2LWtleSE=".into();
    c
}

#[test]
fn defaults_parse_and_need_only_a_key() {
    let c = Config::defaults();
    assert!(matches!(c.validate(), Err(Error::Config { key, .. }) if key == "secrets.key"));
    dev().validate().expect("defaults plus a key are valid");
    assert_eq!(dev().prefetch(), 4096, "twice delivery.concurrency");
}

#[test]
fn to_toml_reads_back_as_the_same_config() {
    let mut c = dev();
    c.delivery.retry_schedule = vec![Duration::from_millis(500), Duration::from_secs(90)];
    c.delivery.defer_delay = Duration::from_millis(250);
    c.delivery.allowed_cidrs = vec!["127.0.0.0/8".parse().expect("cidr")];
    c.log.format = LogFormat::Json;
    c.node.id = "node-1".into();
    c.replication.enabled = true;
    c.replication.changes_max_age = Some(Duration::from_secs(86_400 * 365));
    let back: Config = toml::from_str(&c.to_toml()).expect("parses");
    // Config has no PartialEq (durations and nets compare fine, but the tree is big):
    // its serialized form is compared instead.
    assert_eq!(back.to_toml(), c.to_toml());
    assert_eq!(back.delivery.retry_schedule, c.delivery.retry_schedule);
    assert_eq!(back.delivery.defer_delay, c.delivery.defer_delay);
    assert_eq!(
        back.replication.changes_max_age,
        c.replication.changes_max_age
    );
}

#[test]
fn errors_name_the_key() {
    type Mutation = fn(&mut Config);
    let cases: Vec<(&str, Mutation)> = vec![
        ("amqp.url", |c| c.amqp.url = "http://x".into()),
        ("amqp.namespace", |c| c.amqp.namespace = "a b".into()),
        ("amqp.confirm_timeout", |c| {
            c.amqp.confirm_timeout = Duration::ZERO
        }),
        ("amqp.open_timeout", |c| {
            c.amqp.open_timeout = Duration::ZERO
        }),
        ("delivery.timeout", |c| c.delivery.timeout = Duration::ZERO),
        ("delivery.retry_schedule", |c| {
            c.delivery.retry_schedule = vec![Duration::ZERO]
        }),
        ("delivery.concurrency", |c| c.delivery.concurrency = 0),
        ("delivery.max_slot_wait", |c| {
            c.delivery.max_slot_wait = Duration::from_millis(10_001)
        }),
        ("api.max_webhooks_per_org", |c| {
            c.api.max_webhooks_per_org = 0
        }),
        ("delivery.defer_delay", |c| {
            c.delivery.defer_delay = Duration::from_millis(10)
        }),
        ("delivery.circuit_failure_rate", |c| {
            c.delivery.circuit_failure_rate = 0.0
        }),
        ("delivery.circuit_failure_rate", |c| {
            c.delivery.circuit_failure_rate = 1.5
        }),
        ("delivery.circuit_window", |c| {
            c.delivery.circuit_window = Duration::ZERO
        }),
        ("delivery.circuit_half_open_trials", |c| {
            c.delivery.circuit_half_open_trials = 0
        }),
        ("delivery.circuit_max_deferral", |c| {
            c.delivery.circuit_max_deferral = Duration::ZERO
        }),
        ("delivery.only_allowed_cidrs", |c| {
            c.delivery.only_allowed_cidrs = true
        }),
        ("store.dead_letters_per_org", |c| {
            c.store.dead_letters_per_org = 0
        }),
        ("store.payload_retention", |c| {
            c.store.payload_retention = Duration::from_secs(59)
        }),
        ("store.payload_retention", |c| {
            c.store.payload_retention = Duration::from_secs(91 * 86_400)
        }),
        ("store.dead_letter_body_max_bytes", |c| {
            c.store.dead_letter_body_max_bytes = 1024
        }),
        ("api.listen", |c| c.api.listen = "nowhere".into()),
        ("api.ops_listen", |c| {
            c.api.ops_listen = Some("localhost:9090".into())
        }),
        ("api.tokens", |c| c.api.tokens = vec!["short".into()]),
        // Fifteen characters: one short of the minimum.
        ("api.tokens", |c| {
            c.api.tokens = vec!["0123456789abcde".into()]
        }),
        ("api.org_tokens", |c| {
            c.api.org_tokens = vec![org_token("short", &["acme"])]
        }),
        ("api.org_tokens", |c| {
            c.api.org_tokens = vec![org_token("org-token-0123456789", &[])]
        }),
        ("api.org_tokens", |c| {
            c.api.org_tokens = vec![org_token("org-token-0123456789", &["acme", "a b"])]
        }),
        ("api.org_tokens", |c| {
            c.api.tokens = vec!["both-kinds-0123456789".into()];
            c.api.org_tokens = vec![org_token("both-kinds-0123456789", &["acme"])];
        }),
        ("api.access_token_max_ttl", |c| {
            c.api.access_token_max_ttl = Duration::from_secs(59)
        }),
        ("api.access_token_max_ttl", |c| {
            c.api.access_token_max_ttl = Duration::from_secs(31 * 24 * 3600)
        }),
        ("api.console_frame_ancestors", |c| {
            c.api.console_frame_ancestors = vec!["https://app.example.com; script-src *".into()]
        }),
        ("api.console_frame_ancestors", |c| {
            c.api.console_frame_ancestors = vec!["https://app.example.com/settings".into()]
        }),
        ("api.console_frame_ancestors", |c| {
            c.api.console_frame_ancestors = vec!["*".into()]
        }),
        ("api.request_timeout", |c| {
            c.api.request_timeout = c.delivery.timeout
        }),
        ("api.header_read_timeout", |c| {
            c.api.header_read_timeout = Duration::ZERO
        }),
        ("api.max_connections", |c| c.api.max_connections = 0),
        ("api.max_test_sends", |c| c.api.max_test_sends = 0),
        ("store.payload_max_bytes_per_org", |c| {
            c.store.payload_max_bytes_per_org = 1000
        }),
        ("store.payload_max_bytes", |c| {
            c.store.payload_max_bytes = c.store.payload_max_bytes_per_org - 1
        }),
        ("api.resend_per_webhook_per_sec", |c| {
            c.api.resend_per_webhook_per_sec = 0
        }),
        ("api.resend_per_org_per_sec", |c| {
            c.api.resend_per_org_per_sec = c.api.resend_per_webhook_per_sec - 1
        }),
        ("secrets.key", |c| c.secrets.key = "c2hvcnQ=".into()),
        ("secrets.key", |c| c.secrets.key = "!!".into()),
        ("secrets.previous_keys", |c| {
            c.secrets.previous_keys = vec!["c2hvcnQ=".into()]
        }),
        ("node.id", |c| c.node.id = "node 1".into()),
        ("node.id", |c| c.node.id = "n".repeat(65)),
        ("replication.attempts_max_bytes", |c| {
            c.replication.attempts_max_bytes = 1024
        }),
        ("replication.changes_max_age", |c| {
            c.replication.changes_max_age = Some(Duration::from_millis(10))
        }),
        ("replication.health_interval", |c| {
            c.replication.health_interval = Duration::from_millis(500)
        }),
        ("replication.health_interval", |c| {
            c.replication.health_interval = Duration::from_secs(7200)
        }),
    ];
    for (key, mutate) in cases {
        let mut c = dev();
        mutate(&mut c);
        match c.validate() {
            Err(Error::Config { key: got, .. }) => assert_eq!(got, key),
            other => panic!("{key}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn the_retry_plan_holds_the_schedule_and_the_deferral_tier() {
    let mut c = dev();
    c.delivery.retry_schedule = vec![Duration::from_secs(5), Duration::from_secs(60)];
    c.delivery.defer_delay = Duration::from_secs(2);
    let plan = c.retry_plan().expect("valid");
    assert_eq!(plan.schedule(), &c.retry_schedule().expect("valid"));
    assert_eq!(plan.deferral(), Duration::from_secs(2));
    let tiers: Vec<Duration> = plan.tiers().iter().copied().collect();
    assert_eq!(
        tiers,
        [2, 5, 60].map(Duration::from_secs),
        "the schedule's tiers and the deferral tier"
    );
}

#[test]
fn unknown_keys_are_refused() {
    let text = DEFAULT_CONFIG_TOML.replace("[amqp]", "[amqp]\nurll = \"x\"");
    let err = toml::from_str::<Config>(&text).expect_err("unknown key");
    assert!(err.to_string().contains("urll"), "{err}");
}

fn org_token(token: &str, orgs: &[&str]) -> OrgToken {
    OrgToken {
        token: token.to_owned(),
        orgs: orgs.iter().map(|o| (*o).to_owned()).collect(),
        read_only: false,
    }
}

#[test]
fn org_tokens_are_read_from_a_table_array_and_never_shown() {
    let text = DEFAULT_CONFIG_TOML.replace(
        "org_tokens = []",
        "org_tokens = [{ token = \"org-token-0123456789\", orgs = [\"acme\"], read_only = true }]",
    );
    let mut c: Config = toml::from_str(&text).expect("valid TOML");
    c.secrets.key = dev().secrets.key;
    c.validate().expect("valid");
    assert_eq!(c.api.org_tokens.len(), 1);
    assert!(c.api.org_tokens[0].read_only);
    assert_eq!(c.api.org_tokens[0].orgs, ["acme"]);
    let shown = format!("{c:?}");
    assert!(!shown.contains("org-token-0123456789"), "{shown}");
    let again: Config = toml::from_str(&c.to_toml()).expect("round trip");
    assert_eq!(again.api.org_tokens[0].token, "org-token-0123456789");
}

#[test]
fn console_frame_ancestors_are_origins() {
    let mut c = dev();
    c.api.console_frame_ancestors = vec![
        "https://app.example.com".into(),
        "http://127.0.0.1:3000".into(),
    ];
    c.validate().expect("origins are valid");
}
