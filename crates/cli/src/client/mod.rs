//! A small client of the admin API (`crates/api`), for the `webhooks`, `event-types`,
//! `attempts` and `dead-letters` commands: one method per route, each returning the
//! response body as sent (for `--json`) next to its parsed form (for the tables). The
//! routes are in one submodule per resource; this module sends the requests.

mod access;
mod operations;
mod webhooks;

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

pub use operations::{AttemptFilter, DeadLetterFilter, PurgeSelection, ReplaySelection};
pub use webhooks::{NewWebhook, WebhookChanges};

/// How long to wait for a TCP connection to the API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one call may take. Create and test wait for the receiver's answer to the test
/// event, which the API bounds by `delivery.timeout` (15 s by default) plus DNS.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A successful answer: the body exactly as the API sent it, and its parsed form.
#[derive(Debug)]
pub struct Reply<T> {
    /// The body bytes, untouched; empty for 204.
    pub raw: Vec<u8>,
    /// The parsed body.
    pub value: T,
}

/// An answer outside 2xx, with the API's `{"error":{"code","message"}}` when it sent one.
#[derive(Debug)]
pub struct ApiFailure {
    /// The HTTP status.
    pub status: StatusCode,
    /// The API's machine-readable code, e.g. `not_found`; `None` when the body was not
    /// the API's error shape (a proxy in between, say).
    pub code: Option<String>,
    /// The API's message, or the start of whatever body came.
    pub message: String,
    /// The answer's `Retry-After` in seconds (a 429), when it sent one.
    pub retry_after: Option<std::time::Duration>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(
                f,
                "{} ({code}, HTTP {})",
                self.message,
                self.status.as_u16()
            )?,
            None if self.message.is_empty() => write!(f, "HTTP {}", self.status)?,
            None => write!(f, "HTTP {}: {}", self.status, self.message)?,
        }
        if self.status == StatusCode::UNAUTHORIZED {
            f.write_str("; check --token or HOOKWIRE_API_TOKEN")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    fn from_body(status: StatusCode, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let detail = parsed.as_ref().and_then(|v| v.get("error"));
        let field = |name: &str| {
            detail
                .and_then(|d| d.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match (field("code"), field("message")) {
            (Some(code), Some(message)) => Self {
                status,
                code: Some(code),
                message,
                retry_after: None,
            },
            _ => {
                let text = String::from_utf8_lossy(body);
                let message: String = text.trim().chars().take(200).collect();
                Self {
                    status,
                    code: None,
                    message,
                    retry_after: None,
                }
            }
        }
    }
}

/// `pairs` with a value, form-encoded (an RFC 3339 offset's `+` becomes `%2B`); `None`
/// when none has one.
fn query(pairs: &[(&str, Option<String>)]) -> Option<String> {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in pairs {
        if let Some(value) = value {
            out.append_pair(name, value);
            any = true;
        }
    }
    any.then(|| out.finish())
}

/// The admin API at one base URL, with one bearer token (which `Debug` hides).
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8080`, or with a path prefix
    /// when a proxy serves it under one).
    pub fn new(base: &str, token: &str) -> Result<Self> {
        let base = Url::parse(base).with_context(|| format!("--api `{base}` is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("--api `{base}` must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            // An admin tool talks to the URL it is given; a proxy from the environment
            // would see the bearer token, and break loopback URLs.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("hookwire-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            base,
            token: token.to_owned(),
        })
    }

    /// The base URL followed by `segments`, each percent-encoded as one path segment.
    /// `.`, `..` and empty segments are refused: URL parsing would resolve them away
    /// rather than encode them, and address another route.
    fn url(&self, segments: &[&str]) -> Result<Url> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            bail!("`{bad}` is not a valid organization or webhook id");
        }
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        body: Option<Value>,
    ) -> Result<Reply<T>> {
        self.call_if_match(method, segments, query, body, None)
            .await
    }

    /// [`Self::call`] with `If-Match: "VERSION"` when `version` is given: the API refuses
    /// the write (409 `conflict`) unless the resource is still at that version.
    async fn call_if_match<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        body: Option<Value>,
        version: Option<u64>,
    ) -> Result<Reply<T>> {
        let (url, raw) = self
            .send_if_match(method, segments, query, body, version)
            .await?;
        let value = serde_json::from_slice(&raw)
            .with_context(|| format!("the answer of {url} is not what hookwire's API sends"))?;
        Ok(Reply { raw, value })
    }

    /// Sends one request and returns the body of a 2xx answer; any other status becomes
    /// an [`ApiFailure`].
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        body: Option<Value>,
    ) -> Result<(Url, Vec<u8>)> {
        self.send_if_match(method, segments, query, body, None)
            .await
    }

    async fn send_if_match(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        body: Option<Value>,
        version: Option<u64>,
    ) -> Result<(Url, Vec<u8>)> {
        let mut url = self.url(segments)?;
        url.set_query(query);
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token);
        if let Some(version) = version {
            request = request.header(reqwest::header::IF_MATCH, format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the hookwire API at {}", self.base))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(std::time::Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            let mut failure = ApiFailure::from_body(status, &bytes);
            failure.retry_after = retry_after;
            return Err(failure.into());
        }
        Ok((url, bytes.to_vec()))
    }
}

/// Every page of a list from `cursor` on, fetched with `fetch`, as one list.
pub async fn follow_pages<T>(
    mut cursor: Option<String>,
    mut fetch: impl AsyncFnMut(Option<String>) -> Result<(Vec<T>, Option<String>)>,
) -> Result<Vec<T>> {
    let mut all = Vec::new();
    loop {
        let (items, next) = fetch(cursor.clone()).await?;
        all.extend(items);
        match next {
            None => return Ok(all),
            Some(next) if cursor.as_ref() == Some(&next) => {
                bail!("the API answered the cursor `{next}` with itself; stopping")
            }
            Some(next) => cursor = Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_the_api_error_shape() {
        let f = ApiFailure::from_body(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"not_found","message":"no webhook x"}}"#,
        );
        assert_eq!(f.to_string(), "no webhook x (not_found, HTTP 404)");
        let f = ApiFailure::from_body(StatusCode::BAD_GATEWAY, b"  upstream down\n");
        assert_eq!(f.to_string(), "HTTP 502 Bad Gateway: upstream down");
        let f = ApiFailure::from_body(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(f.to_string(), "HTTP 502 Bad Gateway");
    }

    #[test]
    fn urls_encode_segments_and_keep_a_base_path() {
        let client = ApiClient::new("http://127.0.0.1:8080/hookwire/", "t").expect("client");
        assert_eq!(
            client
                .url(&["v1", "orgs", "acme", "webhooks", "a/b c"])
                .expect("url")
                .as_str(),
            "http://127.0.0.1:8080/hookwire/v1/orgs/acme/webhooks/a%2Fb%20c"
        );
        let client = ApiClient::new("http://127.0.0.1:8080", "t").expect("client");
        assert_eq!(
            client.url(&["v1", "event-types"]).expect("url").as_str(),
            "http://127.0.0.1:8080/v1/event-types"
        );
        // `..` would climb a level (GET …/webhooks/.. is the list): refused before sending.
        assert!(
            client
                .url(&["v1", "orgs", "acme", "webhooks", ".."])
                .is_err()
        );
        assert!(client.url(&["v1", "orgs", "", "webhooks"]).is_err());
        assert!(ApiClient::new("ftp://x", "t").is_err());
        assert!(ApiClient::new("not a url", "t").is_err());
    }
}
