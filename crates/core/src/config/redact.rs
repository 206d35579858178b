//! `Debug` of the configuration without its secrets: the broker password, the API tokens
//! and the secrets key never reach a log line or a panic message.

use super::*;

/// A URL with its password, if any, replaced by `***`: for messages and `Debug`.
pub fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => text.to_owned(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field(
                "url",
                &if self.url.is_empty() {
                    String::new()
                } else {
                    redact_url(&self.url)
                },
            )
            .field(
                "urls",
                &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            )
            .field("replication_factor", &self.replication_factor)
            .field("namespace", &self.namespace)
            .field("prefetch", &self.prefetch)
            .field("connection_name", &self.connection_name)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("open_timeout", &self.open_timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client_certificate", &self.tls_client_certificate)
            .field("tls_client_key", &self.tls_client_key)
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("ops_listen", &self.ops_listen)
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("org_tokens", &self.org_tokens)
            .field("access_token_max_ttl", &self.access_token_max_ttl)
            .field("console_frame_ancestors", &self.console_frame_ancestors)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_test_sends", &self.max_test_sends)
            .field(
                "resend_per_webhook_per_sec",
                &self.resend_per_webhook_per_sec,
            )
            .field("resend_per_org_per_sec", &self.resend_per_org_per_sec)
            .finish()
    }
}

impl std::fmt::Debug for OrgToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgToken")
            .field("token", &"<redacted>")
            .field("orgs", &self.orgs)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("key", &"<redacted>")
            .field("rotation_grace", &self.rotation_grace)
            .finish()
    }
}
