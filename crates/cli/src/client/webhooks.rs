//! The webhook routes, and the event types webhooks subscribe to.

use std::collections::BTreeMap;

use anyhow::Result;
use hookwire_api::webhooks::{
    Preview, RotatedEd25519Key, RotatedSecret, TestResult, Webhook, WebhookList, WebhookWithSecret,
};
use hookwire_core::client_tls::ClientKey;
use reqwest::Method;
use serde_json::Value;

use super::{ApiClient, Reply};

/// Webhooks per page of the listing: the API's largest page.
const LIST_PAGE: usize = 500;

/// The fields of a new webhook.
#[derive(Debug)]
pub struct NewWebhook {
    /// Where deliveries go.
    pub url: String,
    /// What it is for; the API stores "" when absent.
    pub description: Option<String>,
    /// Event types to subscribe to.
    pub events: Vec<String>,
    /// Static headers for every request.
    pub headers: BTreeMap<String, String>,
    /// Static headers whose values are secrets.
    pub secret_headers: BTreeMap<String, String>,
    /// Also sign with Ed25519 (`v1a`).
    pub ed25519: bool,
    /// A CEL filter over the event body.
    pub filter: Option<String>,
    /// A CEL transform whose value is sent as the body.
    pub transform: Option<String>,
    /// The client certificate (PEM) presented when the receiver asks for one.
    pub client_certificate: Option<String>,
    /// Its private key (PEM); `Debug` hides it.
    pub client_key: Option<ClientKey>,
    /// CA certificates (PEM) for the receiver's certificate.
    pub ca_certificates: Option<String>,
    /// Its own retry policy, the API's `retry` object.
    pub retry: Option<Value>,
    /// Attempts in flight at once; the daemon's default when absent.
    pub max_concurrency: Option<u32>,
    /// Deliveries per second; unlimited when absent.
    pub rate_limit_per_sec: Option<u32>,
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
    /// Headers to set (a value) or remove (`None`).
    pub headers: BTreeMap<String, Option<String>>,
    /// Secret headers to set (a value) or remove (`None`).
    pub secret_headers: BTreeMap<String, Option<String>>,
    /// Turn Ed25519 signatures on or off.
    pub ed25519: Option<bool>,
    /// A new filter (`Some(None)`: remove it).
    pub filter: Option<Option<String>>,
    /// A new transform (`Some(None)`: remove it).
    pub transform: Option<Option<String>>,
    /// A new client certificate (PEM), with `client_key`; `Some(None)`: remove it.
    pub client_certificate: Option<Option<String>>,
    /// The new client certificate's key (PEM); `Debug` hides it.
    pub client_key: Option<ClientKey>,
    /// New CA certificates (PEM); `Some(None)`: remove them.
    pub ca_certificates: Option<Option<String>>,
    /// Changes to its own retry policy, the API's `retry` object.
    pub retry: Option<Value>,
    /// A new concurrency ceiling.
    pub max_concurrency: Option<u32>,
    /// A new rate limit.
    pub rate_limit_per_sec: Option<u32>,
}

impl WebhookChanges {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.description.is_none()
            && self.events.is_none()
            && self.enabled.is_none()
            && self.headers.is_empty()
            && self.secret_headers.is_empty()
            && self.ed25519.is_none()
            && self.filter.is_none()
            && self.transform.is_none()
            && self.client_certificate.is_none()
            && self.ca_certificates.is_none()
            && self.retry.is_none()
            && self.max_concurrency.is_none()
            && self.rate_limit_per_sec.is_none()
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
        if !self.headers.is_empty() {
            body.insert("headers".into(), serde_json::json!(self.headers));
        }
        if !self.secret_headers.is_empty() {
            body.insert(
                "secret_headers".into(),
                serde_json::json!(self.secret_headers),
            );
        }
        if let Some(on) = self.ed25519 {
            body.insert("ed25519".into(), on.into());
        }
        if let Some(filter) = &self.filter {
            body.insert("filter".into(), serde_json::json!(filter));
        }
        if let Some(transform) = &self.transform {
            body.insert("transform".into(), serde_json::json!(transform));
        }
        if let Some(certificate) = &self.client_certificate {
            body.insert("client_certificate".into(), serde_json::json!(certificate));
        }
        if let Some(key) = &self.client_key {
            body.insert("client_key".into(), key.pem().into());
        }
        if let Some(ca) = &self.ca_certificates {
            body.insert("ca_certificates".into(), serde_json::json!(ca));
        }
        if let Some(retry) = &self.retry {
            body.insert("retry".into(), retry.clone());
        }
        if let Some(n) = self.max_concurrency {
            body.insert("max_concurrency".into(), n.into());
        }
        if let Some(n) = self.rate_limit_per_sec {
            body.insert("rate_limit_per_sec".into(), n.into());
        }
        Value::Object(body)
    }
}

impl ApiClient {
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
        if !webhook.headers.is_empty() {
            body["headers"] = serde_json::json!(webhook.headers);
        }
        if !webhook.secret_headers.is_empty() {
            body["secret_headers"] = serde_json::json!(webhook.secret_headers);
        }
        if webhook.ed25519 {
            body["ed25519"] = true.into();
        }
        if let Some(filter) = &webhook.filter {
            body["filter"] = filter.clone().into();
        }
        if let Some(transform) = &webhook.transform {
            body["transform"] = transform.clone().into();
        }
        for (field, pem) in [
            ("client_certificate", webhook.client_certificate.as_deref()),
            (
                "client_key",
                webhook.client_key.as_ref().map(ClientKey::pem),
            ),
            ("ca_certificates", webhook.ca_certificates.as_deref()),
        ] {
            if let Some(pem) = pem {
                body[field] = pem.into();
            }
        }
        if let Some(retry) = &webhook.retry {
            body["retry"] = retry.clone();
        }
        if let Some(n) = webhook.max_concurrency {
            body["max_concurrency"] = n.into();
        }
        if let Some(n) = webhook.rate_limit_per_sec {
            body["rate_limit_per_sec"] = n.into();
        }
        self.call(
            Method::POST,
            &["v1", "orgs", org, "webhooks"],
            Some(verify_query(verify)),
            Some(body),
        )
        .await
    }

    /// `GET /v1/orgs/{org}/webhooks`: one page, after `cursor`.
    pub async fn list(&self, org: &str, cursor: Option<String>) -> Result<Reply<WebhookList>> {
        let query = super::query(&[("limit", Some(LIST_PAGE.to_string())), ("cursor", cursor)]);
        self.call(
            Method::GET,
            &["v1", "orgs", org, "webhooks"],
            query.as_deref(),
            None,
        )
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

    /// `PATCH /v1/orgs/{org}/webhooks/{id}`; with `version`, only over that version.
    pub async fn update(
        &self,
        org: &str,
        id: &str,
        changes: &WebhookChanges,
        verify: bool,
        version: Option<u64>,
    ) -> Result<Reply<Webhook>> {
        let path = ["v1", "orgs", org, "webhooks", id];
        self.call_if_match(
            Method::PATCH,
            &path,
            Some(verify_query(verify)),
            Some(changes.to_json()),
            version,
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

    /// `POST /v1/orgs/{org}/webhooks/{id}/rotate-secret`; with `version`, only over that
    /// version.
    pub async fn rotate_secret(
        &self,
        org: &str,
        id: &str,
        version: Option<u64>,
    ) -> Result<Reply<RotatedSecret>> {
        self.call_if_match(
            Method::POST,
            &["v1", "orgs", org, "webhooks", id, "rotate-secret"],
            None,
            None,
            version,
        )
        .await
    }
}

impl ApiClient {
    /// `POST /v1/orgs/{org}/webhooks/{id}/resend` with `selection` (`event_id`, or
    /// `from`, `to` and a `cursor`).
    pub async fn resend(
        &self,
        org: &str,
        id: &str,
        selection: Value,
    ) -> Result<Reply<hookwire_api::resend::ResendResult>> {
        self.call(
            Method::POST,
            &["v1", "orgs", org, "webhooks", id, "resend"],
            None,
            Some(selection),
        )
        .await
    }

    /// `POST /v1/orgs/{org}/webhooks/{id}/transform/preview`, or a draft's
    /// `POST /v1/orgs/{org}/webhooks/transform/preview` without `id`.
    pub async fn preview_transform(
        &self,
        org: &str,
        id: Option<&str>,
        request: Value,
    ) -> Result<Reply<Preview>> {
        let mut path = vec!["v1", "orgs", org, "webhooks"];
        path.extend(id);
        path.extend(["transform", "preview"]);
        self.call(Method::POST, &path, None, Some(request)).await
    }

    /// `POST /v1/orgs/{org}/webhooks/{id}/rotate-ed25519-key`; with `version`, only over
    /// that version.
    pub async fn rotate_ed25519_key(
        &self,
        org: &str,
        id: &str,
        version: Option<u64>,
    ) -> Result<Reply<RotatedEd25519Key>> {
        self.call_if_match(
            Method::POST,
            &["v1", "orgs", org, "webhooks", id, "rotate-ed25519-key"],
            None,
            None,
            version,
        )
        .await
    }
}

fn verify_query(verify: bool) -> &'static str {
    if verify {
        "verify=true"
    } else {
        "verify=false"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_send_only_what_was_given() {
        let changes = WebhookChanges {
            enabled: Some(false),
            ..WebhookChanges::default()
        };
        assert_eq!(changes.to_json(), serde_json::json!({ "enabled": false }));
        assert!(WebhookChanges::default().is_empty());
        let changes = WebhookChanges {
            headers: BTreeMap::from([("x-a".into(), Some("1".into())), ("x-b".into(), None)]),
            filter: Some(None),
            ed25519: Some(true),
            ..WebhookChanges::default()
        };
        assert_eq!(
            changes.to_json(),
            serde_json::json!({ "headers": {"x-a": "1", "x-b": null}, "filter": null, "ed25519": true })
        );
    }
}
