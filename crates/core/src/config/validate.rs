//! Validation: every key `serve` depends on is checked before anything starts, and an
//! error names the key.

use super::*;

/// `scheme://host[:port]` with nothing after it: what a CSP source list may name safely.
fn is_origin(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && u.query().is_none()
            && u.fragment().is_none()
            && u.path() == "/"
            && text.trim_end_matches('/') == u.origin().ascii_serialization()
    })
}

/// Namespaces prefix queue names, which RabbitMQ limits to 255 bytes.
fn is_valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 100
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Config {
    /// Checks every key `serve` depends on; errors name the key.
    pub fn validate(&self) -> Result<()> {
        self.amqp.validate()?;
        let d = &self.delivery;
        if d.timeout < Duration::from_secs(1) {
            return Err(invalid("delivery.timeout", "must be at least 1s"));
        }
        let schedule = d.retry_schedule()?;
        if self.store.dead_letters_per_org == 0 {
            return Err(invalid("store.dead_letters_per_org", "must be at least 1"));
        }
        let (shortest, longest) = PAYLOAD_RETENTION_BOUNDS;
        if self.store.payload_max_bytes_per_org < MIN_PAYLOAD_BUDGET_BYTES {
            return Err(invalid(
                "store.payload_max_bytes_per_org",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.store.payload_max_bytes < self.store.payload_max_bytes_per_org {
            return Err(invalid(
                "store.payload_max_bytes",
                "must be at least store.payload_max_bytes_per_org",
            ));
        }
        if !(shortest..=longest).contains(&self.store.payload_retention) {
            return Err(invalid(
                "store.payload_retention",
                "must be from 1m to 90days",
            ));
        }
        if d.concurrency == 0 {
            return Err(invalid("delivery.concurrency", "must be at least 1"));
        }
        if self.api.max_webhooks_per_org == 0 {
            return Err(invalid("api.max_webhooks_per_org", "must be at least 1"));
        }
        if d.circuit_failure_threshold == 0 {
            return Err(invalid(
                "delivery.circuit_failure_threshold",
                "must be at least 1",
            ));
        }
        if !(d.circuit_failure_rate > 0.0 && d.circuit_failure_rate <= 1.0) {
            return Err(invalid(
                "delivery.circuit_failure_rate",
                "must be above 0 and at most 1",
            ));
        }
        if d.circuit_window < Duration::from_millis(100) {
            return Err(invalid("delivery.circuit_window", "must be at least 100ms"));
        }
        if d.circuit_half_open_trials == 0 {
            return Err(invalid(
                "delivery.circuit_half_open_trials",
                "must be at least 1",
            ));
        }
        if d.circuit_max_deferral < Duration::from_secs(1) {
            return Err(invalid(
                "delivery.circuit_max_deferral",
                "must be at least 1s",
            ));
        }
        if d.per_endpoint_concurrency == 0 {
            return Err(invalid(
                "delivery.per_endpoint_concurrency",
                "must be at least 1",
            ));
        }
        if d.max_slot_wait > MAX_SLOT_WAIT {
            return Err(invalid("delivery.max_slot_wait", "must be at most 10s"));
        }
        d.retry_plan_of(schedule)?;
        if d.max_event_bytes == 0 || d.max_event_bytes > 16 * 1024 * 1024 {
            return Err(invalid(
                "delivery.max_event_bytes",
                "must be from 1 byte to 16 MiB",
            ));
        }
        if self.store.dead_letter_body_max_bytes < d.max_event_bytes {
            return Err(invalid(
                "store.dead_letter_body_max_bytes",
                "must be at least delivery.max_event_bytes",
            ));
        }
        if d.only_allowed_cidrs && d.allowed_cidrs.is_empty() {
            return Err(invalid(
                "delivery.only_allowed_cidrs",
                "needs delivery.allowed_cidrs",
            ));
        }
        if self.api.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "api.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.api.listen
                ),
            ));
        }
        if let Some(ops) = &self.api.ops_listen
            && ops.parse::<SocketAddr>().is_err()
        {
            return Err(invalid(
                "api.ops_listen",
                format!("`{ops}` is not an address like 127.0.0.1:9090"),
            ));
        }
        if self
            .api
            .tokens
            .iter()
            .any(|t| t.chars().count() < MIN_TOKEN_CHARS)
        {
            return Err(invalid(
                "api.tokens",
                format!(
                    "every token must have at least {MIN_TOKEN_CHARS} characters (e.g. openssl rand -hex 32)"
                ),
            ));
        }
        self.validate_org_tokens()?;
        if !(MIN_ACCESS_TOKEN_TTL..=MAX_ACCESS_TOKEN_TTL).contains(&self.api.access_token_max_ttl) {
            return Err(invalid(
                "api.access_token_max_ttl",
                "must be from 1m to 30days",
            ));
        }
        if let Some(bad) = self
            .api
            .console_frame_ancestors
            .iter()
            .find(|o| !is_origin(o))
        {
            return Err(invalid(
                "api.console_frame_ancestors",
                format!("`{bad}` is not an origin like https://app.example.com"),
            ));
        }
        if self.api.header_read_timeout.is_zero() {
            return Err(invalid("api.header_read_timeout", "must be more than 0"));
        }
        if self.api.request_timeout <= d.timeout {
            return Err(invalid(
                "api.request_timeout",
                "must be longer than delivery.timeout, which a test event may take",
            ));
        }
        if self.api.max_connections == 0 {
            return Err(invalid("api.max_connections", "must be at least 1"));
        }
        if self.api.resend_per_webhook_per_sec == 0 {
            return Err(invalid(
                "api.resend_per_webhook_per_sec",
                "must be at least 1",
            ));
        }
        if self.api.resend_per_org_per_sec < self.api.resend_per_webhook_per_sec {
            return Err(invalid(
                "api.resend_per_org_per_sec",
                "must be at least api.resend_per_webhook_per_sec",
            ));
        }
        if self.api.max_test_sends == 0 {
            return Err(invalid("api.max_test_sends", "must be at least 1"));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        for (key, path) in [
            ("delivery.ca_file", &d.ca_file),
            ("catalog.path", &self.catalog.path),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid(key, "is empty: leave the key out for none"));
            }
        }
        if !self.node.id.is_empty() && !is_valid_node_id(&self.node.id) {
            return Err(invalid(
                "node.id",
                "must be 1 to 64 of [A-Za-z0-9._-], or empty to generate one",
            ));
        }
        if self
            .replication
            .changes_max_age
            .is_some_and(|age| age < Duration::from_secs(1))
        {
            return Err(invalid(
                "replication.changes_max_age",
                "must be at least 1s, or unset to keep the stream whole",
            ));
        }
        if self.replication.attempts_max_bytes < MIN_STREAM_MAX_BYTES {
            return Err(invalid(
                "replication.attempts_max_bytes",
                format!("must be at least {MIN_STREAM_MAX_BYTES} (64 MiB)"),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600))
            .contains(&self.replication.health_interval)
        {
            return Err(invalid(
                "replication.health_interval",
                "must be from 1s to 1h",
            ));
        }
        if let Some(proxy) = &d.proxy {
            proxy.validate()?;
        }
        self.tracing.validate()?;
        self.secrets_key()?;
        self.previous_secrets_keys()?;
        Ok(())
    }

    /// `api.org_tokens`: long enough, each limited to at least one valid organization,
    /// and none also an operator's token (which would make its limit meaningless).
    fn validate_org_tokens(&self) -> Result<()> {
        const KEY: &str = "api.org_tokens";
        for (i, t) in self.api.org_tokens.iter().enumerate() {
            if t.token.chars().count() < MIN_TOKEN_CHARS {
                return Err(invalid(
                    KEY,
                    format!("token {i} must have at least {MIN_TOKEN_CHARS} characters"),
                ));
            }
            if t.orgs.is_empty() {
                return Err(invalid(KEY, format!("token {i} names no organization")));
            }
            if let Some(bad) = t.orgs.iter().find(|o| !crate::event::is_valid_org(o)) {
                return Err(invalid(
                    KEY,
                    format!("token {i}: organization `{bad}` is not [A-Za-z0-9_-]{{1,64}}"),
                ));
            }
            if self.api.tokens.contains(&t.token) {
                return Err(invalid(
                    KEY,
                    format!("token {i} is also in api.tokens, which are not limited"),
                ));
            }
        }
        Ok(())
    }
}

impl AmqpConfig {
    /// Checks the `[amqp]` keys, all that `topology` and `publish` need.
    pub fn validate(&self) -> Result<()> {
        self.validate_urls()?;
        if !is_valid_namespace(&self.namespace) {
            return Err(invalid(
                "amqp.namespace",
                "must be 1 to 100 of [A-Za-z0-9._-]",
            ));
        }
        if self.confirm_timeout < Duration::from_secs(1) {
            return Err(invalid("amqp.confirm_timeout", "must be at least 1s"));
        }
        if self.open_timeout < Duration::from_secs(1) {
            return Err(invalid("amqp.open_timeout", "must be at least 1s"));
        }
        self.validate_tls()
    }
}
