//! The admin API against a live in-process server, the real broker and loopback receivers.

mod access;
mod bad_input;
mod console;
mod custom_headers;
mod dead_letter_bounds;
mod ed25519;
mod filters;
mod hygiene;
mod lifecycle;
mod operations;
mod races;
mod resend;
mod spec;
mod tenants;

use hookwire_testkit::Harness;
use hookwire_testkit::harness::API_TOKEN;
use serde_json::Value;

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
