//! A small client of the admin API (`crates/api`), for the `webhooks`, `event-types`,
//! `attempts` and `dead-letters` commands: one method per route, each returning the
//! response body as sent (for `--json`) next to its parsed form (for the tables).

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hookwire_api::operations::{AttemptPage, DeadLetterList, PurgeResult, ReplayResult};
use hookwire_api::webhooks::{RotatedSecret, TestResult, Webhook, WebhookList, WebhookWithSecret};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;
use uuid::Uuid;

/// How long to wait for a TCP connection to the API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one call may take. Create and test wait for the receiver's answer to the test
/// event, which the API bounds by `delivery.timeout_secs` (15 s by default) plus DNS.
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
            },
            _ => {
                let text = String::from_utf8_lossy(body);
                let message: String = text.trim().chars().take(200).collect();
                Self {
                    status,
                    code: None,
                    message,
                }
            }
        }
    }
}

/// The fields of a new webhook.
#[derive(Debug)]
pub struct NewWebhook {
    /// Where deliveries go.
    pub url: String,
    /// What it is for; the API stores "" when absent.
    pub description: Option<String>,
    /// Event types to subscribe to.
    pub events: Vec<String>,
}

/// Changes to a webhook; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct WebhookChanges {
    /// A new URL (the API sends it a test event first, unless told not to).
    pub url: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// New event types.
    pub events: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

impl WebhookChanges {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.description.is_none()
            && self.events.is_none()
            && self.enabled.is_none()
    }

    fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(url) = &self.url {
            body.insert("url".into(), url.clone().into());
        }
        if let Some(description) = &self.description {
            body.insert("description".into(), description.clone().into());
        }
        if let Some(events) = &self.events {
            body.insert("events".into(), events.clone().into());
        }
        if let Some(enabled) = self.enabled {
            body.insert("enabled".into(), enabled.into());
        }
        Value::Object(body)
    }
}

/// Filters and position of one page of a webhook's attempt log; `None` is no filter.
#[derive(Debug, Default, Clone)]
pub struct AttemptFilter {
    /// Only `delivered`, `retry`, `permanent` or `gone`.
    pub outcome: Option<String>,
    /// Not before (RFC 3339).
    pub since: Option<String>,
    /// Before (RFC 3339).
    pub until: Option<String>,
    /// A previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size; the API's default when `None`.
    pub limit: Option<usize>,
}

impl AttemptFilter {
    fn query(&self) -> Option<String> {
        query(&[
            ("outcome", self.outcome.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("cursor", self.cursor.clone()),
            ("limit", self.limit.map(|l| l.to_string())),
        ])
    }
}

/// Filters of a dead-letter list; `None` is no filter.
#[derive(Debug, Default, Clone)]
pub struct DeadLetterFilter {
    /// Only this webhook's.
    pub webhook_id: Option<Uuid>,
    /// Dead since (RFC 3339).
    pub since: Option<String>,
    /// Dead before (RFC 3339).
    pub until: Option<String>,
    /// A previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size; the API's default when `None`.
    pub limit: Option<usize>,
}

impl DeadLetterFilter {
    fn query(&self) -> Option<String> {
        query(&[
            ("webhook_id", self.webhook_id.map(|id| id.to_string())),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("cursor", self.cursor.clone()),
            ("limit", self.limit.map(|l| l.to_string())),
        ])
    }
}

/// Which dead letters to replay. The API replays those that match every given field.
#[derive(Debug, Default, Clone)]
pub struct ReplaySelection {
    /// These dead letters.
    pub ids: Option<Vec<Uuid>>,
    /// Every dead letter of this webhook.
    pub webhook_id: Option<Uuid>,
    /// Dead since (RFC 3339).
    pub since: Option<String>,
    /// Dead before (RFC 3339).
    pub until: Option<String>,
}

impl ReplaySelection {
    fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(ids) = &self.ids {
            body.insert("ids".into(), ids_json(ids));
        }
        if let Some(webhook_id) = self.webhook_id {
            body.insert("webhook_id".into(), webhook_id.to_string().into());
        }
        if let Some(since) = &self.since {
            body.insert("since".into(), since.clone().into());
        }
        if let Some(until) = &self.until {
            body.insert("until".into(), until.clone().into());
        }
        Value::Object(body)
    }
}

/// Which dead letters to purge: by ids, or all dead before a time.
#[derive(Debug, Default, Clone)]
pub struct PurgeSelection {
    /// These dead letters.
    pub ids: Option<Vec<Uuid>>,
    /// Every dead letter archived before this time (RFC 3339).
    pub before: Option<String>,
}

impl PurgeSelection {
    fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(ids) = &self.ids {
            body.insert("ids".into(), ids_json(ids));
        }
        if let Some(before) = &self.before {
            body.insert("before".into(), before.clone().into());
        }
        Value::Object(body)
    }
}

fn ids_json(ids: &[Uuid]) -> Value {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .into()
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

/// The admin API at one base URL, with one bearer token.
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: String,
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

    /// `GET /v1/event-types`. The API's `EventTypes` is not `Deserialize`, so this is
    /// the JSON value: `{"event_types":[{"name","description","fields"}]}`.
    pub async fn event_types(&self) -> Result<Reply<Value>> {
        self.call(Method::GET, &["v1", "event-types"], None, None)
            .await
    }

    /// `POST /v1/orgs/{org}/webhooks`; with `verify` false, `?verify=false` skips the
    /// test event.
    pub async fn create(
        &self,
        org: &str,
        webhook: &NewWebhook,
        verify: bool,
    ) -> Result<Reply<WebhookWithSecret>> {
        let mut body = serde_json::json!({ "url": webhook.url, "events": webhook.events });
        if let Some(description) = &webhook.description {
            body["description"] = description.clone().into();
        }
        self.call(
            Method::POST,
            &["v1", "orgs", org, "webhooks"],
            Some(verify_query(verify)),
            Some(body),
        )
        .await
    }

    /// `GET /v1/orgs/{org}/webhooks`.
    pub async fn list(&self, org: &str) -> Result<Reply<WebhookList>> {
        self.call(Method::GET, &["v1", "orgs", org, "webhooks"], None, None)
            .await
    }

    /// `GET /v1/orgs/{org}/webhooks/{id}`.
    pub async fn get(&self, org: &str, id: &str) -> Result<Reply<Webhook>> {
        self.call(
            Method::GET,
            &["v1", "orgs", org, "webhooks", id],
            None,
            None,
        )
        .await
    }

    /// `PATCH /v1/orgs/{org}/webhooks/{id}`.
    pub async fn update(
        &self,
        org: &str,
        id: &str,
        changes: &WebhookChanges,
        verify: bool,
    ) -> Result<Reply<Webhook>> {
        let path = ["v1", "orgs", org, "webhooks", id];
        self.call(
            Method::PATCH,
            &path,
            Some(verify_query(verify)),
            Some(changes.to_json()),
        )
        .await
    }

    /// `DELETE /v1/orgs/{org}/webhooks/{id}` (204, no body).
    pub async fn delete(&self, org: &str, id: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            &["v1", "orgs", org, "webhooks", id],
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// `POST /v1/orgs/{org}/webhooks/{id}/test`.
    pub async fn test(&self, org: &str, id: &str) -> Result<Reply<TestResult>> {
        self.call(
            Method::POST,
            &["v1", "orgs", org, "webhooks", id, "test"],
            None,
            None,
        )
        .await
    }

    /// `POST /v1/orgs/{org}/webhooks/{id}/rotate-secret`.
    pub async fn rotate_secret(&self, org: &str, id: &str) -> Result<Reply<RotatedSecret>> {
        self.call(
            Method::POST,
            &["v1", "orgs", org, "webhooks", id, "rotate-secret"],
            None,
            None,
        )
        .await
    }

    /// `GET /v1/orgs/{org}/webhooks/{id}/attempts`: one page, oldest first.
    pub async fn attempts(
        &self,
        org: &str,
        id: &str,
        filter: &AttemptFilter,
    ) -> Result<Reply<AttemptPage>> {
        let query = filter.query();
        self.call(
            Method::GET,
            &["v1", "orgs", org, "webhooks", id, "attempts"],
            query.as_deref(),
            None,
        )
        .await
    }

    /// `GET /v1/orgs/{org}/dead-letters`, or with no `org`, `GET /v1/admin/dead-letters`
    /// (the dead letters that belong to no organization).
    pub async fn dead_letters(
        &self,
        org: Option<&str>,
        filter: &DeadLetterFilter,
    ) -> Result<Reply<DeadLetterList>> {
        let query = filter.query();
        self.call(
            Method::GET,
            &dead_letters_path(org, None),
            query.as_deref(),
            None,
        )
        .await
    }

    /// `POST /v1/orgs/{org}/dead-letters/replay`.
    pub async fn replay(
        &self,
        org: &str,
        selection: &ReplaySelection,
    ) -> Result<Reply<ReplayResult>> {
        self.call(
            Method::POST,
            &dead_letters_path(Some(org), Some("replay")),
            None,
            Some(selection.to_json()),
        )
        .await
    }

    /// `POST /v1/orgs/{org}/dead-letters/purge`, or with no `org`,
    /// `POST /v1/admin/dead-letters/purge`.
    pub async fn purge(
        &self,
        org: Option<&str>,
        selection: &PurgeSelection,
    ) -> Result<Reply<PurgeResult>> {
        self.call(
            Method::POST,
            &dead_letters_path(org, Some("purge")),
            None,
            Some(selection.to_json()),
        )
        .await
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
        let (url, raw) = self.send(method, segments, query, body).await?;
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
        let mut url = self.url(segments)?;
        url.set_query(query);
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the hookwire API at {}", self.base))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            return Err(ApiFailure::from_body(status, &bytes).into());
        }
        Ok((url, bytes.to_vec()))
    }
}

/// `v1/orgs/{org}/dead-letters[/action]`, or `v1/admin/dead-letters[/action]` without an
/// organization.
fn dead_letters_path<'a>(org: Option<&'a str>, action: Option<&'a str>) -> Vec<&'a str> {
    let mut path = match org {
        Some(org) => vec!["v1", "orgs", org, "dead-letters"],
        None => vec!["v1", "admin", "dead-letters"],
    };
    path.extend(action);
    path
}

fn verify_query(verify: bool) -> &'static str {
    if verify {
        "verify=true"
    } else {
        "verify=false"
    }
}

/// `raw` JSON indented by two spaces, keys in the order the API sent them (re-serializing
/// a `serde_json::Value` would sort them). Anything that is not JSON comes back as text.
pub fn pretty_json(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_err() {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                if chars.peek().is_some_and(|&n| n == '}' || n == ']') {
                    // An empty object or array stays on one line.
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_keeps_key_order_and_strings() {
        let raw = br#"{"z":1,"a":[true,null,{}],"s":"a,b:{\"c\"}\\","e":[],"n":{"k":-1.5e3}}"#;
        let pretty = pretty_json(raw);
        let expected = r#"{
  "z": 1,
  "a": [
    true,
    null,
    {}
  ],
  "s": "a,b:{\"c\"}\\",
  "e": [],
  "n": {
    "k": -1.5e3
  }
}"#;
        assert_eq!(pretty, expected);
        let reparsed: Value = serde_json::from_str(&pretty).expect("still JSON");
        assert_eq!(
            reparsed,
            serde_json::from_slice::<Value>(raw).expect("JSON")
        );
    }

    #[test]
    fn pretty_json_passes_non_json_through() {
        assert_eq!(
            pretty_json(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(pretty_json(b" { } "), "{}");
    }

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

    #[test]
    fn operations_queries_and_bodies_hold_only_what_was_given() {
        assert_eq!(AttemptFilter::default().query(), None);
        let filter = AttemptFilter {
            outcome: Some("retry".into()),
            since: Some("2024-05-01T10:00:00+02:00".into()),
            cursor: Some("a b&c".into()),
            limit: Some(2),
            ..AttemptFilter::default()
        };
        assert_eq!(
            filter.query().as_deref(),
            Some("outcome=retry&since=2024-05-01T10%3A00%3A00%2B02%3A00&cursor=a+b%26c&limit=2")
        );
        let id = Uuid::nil();
        let filter = DeadLetterFilter {
            webhook_id: Some(id),
            ..DeadLetterFilter::default()
        };
        assert_eq!(
            filter.query().as_deref(),
            Some("webhook_id=00000000-0000-0000-0000-000000000000")
        );
        let replay = ReplaySelection {
            webhook_id: Some(id),
            until: Some("2999-01-01T00:00:00Z".into()),
            ..ReplaySelection::default()
        };
        assert_eq!(
            replay.to_json(),
            serde_json::json!({"webhook_id": id.to_string(), "until": "2999-01-01T00:00:00Z"})
        );
        let purge = PurgeSelection {
            ids: Some(vec![id]),
            before: None,
        };
        assert_eq!(
            purge.to_json(),
            serde_json::json!({"ids": [id.to_string()]})
        );
        assert_eq!(
            dead_letters_path(None, Some("purge")),
            ["v1", "admin", "dead-letters", "purge"]
        );
        assert_eq!(
            dead_letters_path(Some("acme"), None),
            ["v1", "orgs", "acme", "dead-letters"]
        );
    }

    #[test]
    fn changes_send_only_what_was_given() {
        let changes = WebhookChanges {
            enabled: Some(false),
            ..WebhookChanges::default()
        };
        assert_eq!(changes.to_json(), serde_json::json!({ "enabled": false }));
        assert!(WebhookChanges::default().is_empty());
    }
}
