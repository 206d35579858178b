//! Who a token is, what it reaches, and minting access tokens.

use anyhow::Result;
use hookwire_api::access::AccessToken;
use hookwire_api::auth::WhoAmI;
use hookwire_api::operations::OrgList;
use reqwest::Method;
use serde_json::Value;

use super::{ApiClient, Reply};

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
}
