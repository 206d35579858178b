//! `[tracing]`: exporting spans over OTLP/HTTP.

use serde::{Deserialize, Serialize};

use super::invalid;
use crate::Result;

/// `[tracing]`. Off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The OTLP/HTTP collector's base URL, e.g. `http://127.0.0.1:4318`: spans are POSTed
    /// as JSON to `<otlp_endpoint>/v1/traces`. Empty: no span is built or exported.
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "hookwire".into(),
        }
    }
}

impl TracingConfig {
    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        !self.otlp_endpoint.is_empty()
    }

    /// Where spans are POSTed: the endpoint with `/v1/traces` appended, as the OTLP
    /// exporter specification builds it from a base URL. `None` when tracing is off.
    pub fn traces_url(&self) -> Option<String> {
        self.enabled()
            .then(|| format!("{}/v1/traces", self.otlp_endpoint.trim_end_matches('/')))
    }

    /// The endpoint is an http(s) URL with a host and nothing that would not survive
    /// appending `/v1/traces` (no query, fragment or credentials).
    pub fn validate(&self) -> Result<()> {
        if self.enabled() {
            let endpoint = &self.otlp_endpoint;
            let url = url::Url::parse(endpoint).map_err(|e| {
                invalid(
                    "tracing.otlp_endpoint",
                    format!("`{endpoint}` is not a URL like http://127.0.0.1:4318: {e}"),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(
                    "tracing.otlp_endpoint",
                    format!("`{endpoint}` must be an http:// or https:// URL with a host"),
                ));
            }
            if url.query().is_some()
                || url.fragment().is_some()
                || !url.username().is_empty()
                || url.password().is_some()
            {
                return Err(invalid(
                    "tracing.otlp_endpoint",
                    "must have no query, fragment or credentials: it is a base URL, to which /v1/traces is appended",
                ));
            }
        }
        let name = &self.service_name;
        if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(invalid(
                "tracing.service_name",
                "must be 1 to 255 bytes without control characters",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn with_endpoint(endpoint: &str) -> TracingConfig {
        TracingConfig {
            otlp_endpoint: endpoint.into(),
            ..TracingConfig::default()
        }
    }

    fn refused_key(config: &TracingConfig) -> String {
        match config.validate() {
            Err(Error::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn off_by_default() {
        let config = TracingConfig::default();
        assert!(!config.enabled());
        assert_eq!(config.traces_url(), None);
        config.validate().expect("valid");
    }

    #[test]
    fn an_endpoint_becomes_its_traces_url() {
        for (endpoint, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://otel.example.com/",
                "https://otel.example.com/v1/traces",
            ),
            (
                "http://collector:4318/otlp",
                "http://collector:4318/otlp/v1/traces",
            ),
        ] {
            let config = with_endpoint(endpoint);
            config.validate().expect(endpoint);
            assert_eq!(config.traces_url().as_deref(), Some(url));
        }
    }

    #[test]
    fn bad_endpoints_are_config_errors_naming_the_key() {
        for bad in [
            "127.0.0.1:4318",
            "not a url",
            "grpc://127.0.0.1:4317",
            "http://127.0.0.1:4318/?x=1",
            "http://user:pass@127.0.0.1:4318",
            "file:///tmp/spans",
        ] {
            assert_eq!(
                refused_key(&with_endpoint(bad)),
                "tracing.otlp_endpoint",
                "{bad}"
            );
        }
        let unnamed = TracingConfig {
            service_name: " ".into(),
            ..with_endpoint("http://127.0.0.1:4318")
        };
        assert_eq!(refused_key(&unnamed), "tracing.service_name");
    }
}
