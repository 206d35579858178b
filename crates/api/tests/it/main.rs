//! The admin API against a live in-process server, the real broker and loopback receivers.

mod access;
mod backup;
mod bad_input;
mod console;
mod custom_headers;
mod dead_letter_bounds;
mod ed25519;
mod filters;
mod hygiene;
mod lifecycle;
mod mtls;
mod operations;
mod orgless_replay;
mod proxy;
mod races;
mod resend;
mod retry_policy;
mod spec;
mod tenants;
mod transforms;

use hookwire_testkit::Harness;
use hookwire_testkit::harness::API_TOKEN;
use reqwest::Method;
use serde_json::{Value, json};

/// `acme`'s webhooks, the organization most tests use.
pub const WEBHOOKS: &str = "/v1/orgs/acme/webhooks";

/// The path of `acme`'s webhook `id`.
pub fn webhook_path(id: &str) -> String {
    format!("{WEBHOOKS}/{id}")
}

/// A webhook for `acme` to create: on `report_created` at a URL, after its test event,
/// unless a test says otherwise.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    body: Value,
    verify: bool,
}

/// A webhook of `acme` on `report_created` at `url`.
pub fn webhook(url: &str) -> NewWebhook {
    NewWebhook {
        body: json!({"url": url, "events": ["report_created"]}),
        verify: true,
    }
}

impl NewWebhook {
    /// Sets (or replaces) these fields of the create body.
    pub fn with(mut self, fields: Value) -> Self {
        for (name, value) in fields.as_object().expect("fields are an object") {
            self.body[name] = value.clone();
        }
        self
    }

    /// Created without a test event (`?verify=false`).
    pub fn unverified(mut self) -> Self {
        self.verify = false;
        self
    }
}

/// A webhook the API created.
#[derive(Debug)]
pub struct Created {
    pub id: String,
    /// `/v1/orgs/acme/webhooks/{id}`.
    pub path: String,
    /// The create's answer (with the secret, shown only there).
    pub answer: Value,
}

/// A small client for the tests: every call returns the status and the JSON body.
#[derive(Debug)]
pub struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(h: &Harness) -> Self {
        Self {
            base: h.api_url(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(API_TOKEN, method, path)
    }

    /// A request with `token` as its bearer token.
    pub fn request_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        Self::send_owned(request).await
    }

    /// [`Api::send`] without a borrow of the client, for a request run on its own task.
    pub async fn send_owned(request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            // `/metrics` answers text; every other route answers JSON.
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    /// A POST with `body`, or with none (`None`).
    pub async fn post(&self, path: &str, body: impl Into<Option<Value>>) -> (u16, Value) {
        self.call(Method::POST, path, body.into()).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Asks to create `webhook`: the status and the answer, whatever they are.
    pub async fn try_create(&self, webhook: &NewWebhook) -> (u16, Value) {
        let path = if webhook.verify {
            WEBHOOKS.to_owned()
        } else {
            format!("{WEBHOOKS}?verify=false")
        };
        self.post(&path, webhook.body.clone()).await
    }

    /// Creates `webhook`, which must succeed.
    pub async fn create(&self, webhook: NewWebhook) -> Created {
        let (status, answer) = self.try_create(&webhook).await;
        assert_eq!(status, 201, "{}: {answer}", webhook.body);
        let id = answer["id"].as_str().expect("id").to_owned();
        Created {
            path: webhook_path(&id),
            id,
            answer,
        }
    }

    /// Asserts that creating `webhook` is refused with `status` and the error `code`, and
    /// returns the error's message.
    pub async fn create_refused(&self, webhook: NewWebhook, status: u16, code: &str) -> String {
        let (got, answer) = self.try_create(&webhook).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{}: {answer}",
            webhook.body
        );
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Asserts that `patch` of the webhook at `path` is refused with `status` and the error
    /// `code` and changes nothing (its version stays), and returns the webhook as it is.
    pub async fn patch_refused(&self, path: &str, patch: Value, status: u16, code: &str) -> Value {
        let (_, before) = self.get(path).await;
        let (got, answer) = self.patch(path, patch.clone()).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{patch}: {answer}"
        );
        let (got, after) = self.get(path).await;
        assert_eq!(got, 200, "{after}");
        assert_eq!(
            after["version"], before["version"],
            "{patch} changed nothing"
        );
        after
    }
}

/// The value of one sample line of the Prometheus text, or 0 when it is absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Asserts the error shape and returns the code.
pub fn error_code(body: &Value) -> &str {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.code in {body}"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "no error.message in {body}"
    );
    code
}
