//! The access-token route.

use anyhow::Result;
use hookwire_api::access::AccessToken;
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
}
