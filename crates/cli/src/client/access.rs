//! Who a token is, what it reaches, minting access tokens, and the operators' store
//! export.

use std::time::Duration;

use anyhow::{Context, Result};
use hookwire_api::access::AccessToken;
use hookwire_api::auth::WhoAmI;
use hookwire_api::operations::OrgList;
use reqwest::Method;
use serde_json::Value;

use super::{ApiClient, ApiFailure, Reply};

/// The longest a store export may take in all: its reader bounds each wait for the next
/// chunk instead, so this only keeps the call from being unbounded.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl ApiClient {
    /// `POST /v1/orgs/{org}/access-tokens`.
    pub async fn mint_access_token(
        &self,
        org: &str,
        ttl: Option<&str>,
        read_only: bool,
    ) -> Result<Reply<AccessToken>> {
        let mut body = serde_json::Map::new();
        if let Some(ttl) = ttl {
            body.insert("ttl".into(), ttl.into());
        }
        body.insert("read_only".into(), read_only.into());
        self.call(
            Method::POST,
            &["v1", "orgs", org, "access-tokens"],
            None,
            Some(Value::Object(body)),
        )
        .await
    }

    /// `GET /v1/whoami`: what the presented token may do.
    pub async fn whoami(&self) -> Result<Reply<WhoAmI>> {
        self.call(Method::GET, &["v1", "whoami"], None, None).await
    }

    /// `GET /v1/admin/orgs`: one page of the organizations that have webhooks.
    pub async fn orgs(
        &self,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> Result<Reply<OrgList>> {
        let query = super::query(&[("cursor", cursor), ("limit", limit.map(|l| l.to_string()))]);
        self.call(
            Method::GET,
            &["v1", "admin", "orgs"],
            query.as_deref(),
            None,
        )
        .await
    }

    /// `GET /v1/admin/store/export`: the answer with its body still to read, since it
    /// streams (JSON lines) for as long as the store takes to read.
    pub async fn store_export(&self) -> Result<reqwest::Response> {
        let url = self.url(&["v1", "admin", "store", "export"])?;
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(&self.token)
            .timeout(EXPORT_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("cannot reach the hookwire API at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response
                .bytes()
                .await
                .with_context(|| format!("cannot read the answer of {url}"))?;
            return Err(ApiFailure::from_body(status, &bytes).into());
        }
        Ok(response)
    }
}
