//! Who is asking, and what they may see: operators' tokens (`api.tokens`) reach every
//! route; tokens limited to organizations (`api.org_tokens`, and access tokens minted by
//! an operator) reach only those organizations' routes. Another organization's routes
//! answer them exactly like a route that does not exist, and `/v1/admin/*` refuses them.

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use hookwire_core::config::OrgToken;
use hookwire_core::now_ms;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, ToSchema};

use crate::access::{self, TokenError};
use crate::webhooks::rfc3339;
use crate::{ApiError, ApiState};

/// The route that mints access tokens: operators only, or a token could extend itself.
pub(crate) const MINT_ROUTE: &str = "/v1/orgs/{org}/access-tokens";

/// The bearer of a request's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// One of `api.tokens`: every route.
    Operator,
    /// Limited to some organizations: one of `api.org_tokens`, or an access token.
    Orgs {
        /// The organizations it may see.
        orgs: Vec<String>,
        /// Only `GET` (and `HEAD`).
        read_only: bool,
        /// When it stops working (ms since the epoch); `None` for a configured token.
        expires_at_ms: Option<u64>,
    },
}

/// Lets a request through with a valid token whose reach covers the route, and hands the
/// [`Credential`] to the handler.
pub async fn authenticate(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let credential = identify(&state, presented)?;
    let (mut parts, body) = request.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let org = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "org")
                .map(|(_, value)| value.to_owned())
        });
    authorize(&credential, &parts.method, &route, org.as_deref())?;
    parts.extensions.insert(credential);
    Ok(next.run(Request::from_parts(parts, body)).await)
}

/// The credential `presented` stands for, or 401.
fn identify(state: &ApiState, presented: &str) -> Result<Credential, ApiError> {
    if presented.starts_with(access::PREFIX) {
        return match state.config.access_keys.verify(presented, now_ms()) {
            Ok(claims) => Ok(Credential::Orgs {
                orgs: vec![claims.org],
                read_only: claims.ro,
                expires_at_ms: Some(claims.exp),
            }),
            Err(TokenError::Expired) => Err(ApiError::TokenExpired),
            Err(TokenError::Invalid) => Err(ApiError::Unauthorized),
        };
    }
    match configured(
        &state.config.tokens.current(),
        &state.config.org_tokens,
        presented,
    ) {
        Some(Configured::Operator) => Ok(Credential::Operator),
        Some(Configured::Org(i)) => {
            let t = &state.config.org_tokens[i];
            Ok(Credential::Orgs {
                orgs: t.orgs.clone(),
                read_only: t.read_only,
                expires_at_ms: None,
            })
        }
        None => Err(ApiError::Unauthorized),
    }
}

/// Which configured token matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Configured {
    Operator,
    Org(usize),
}

/// Which of the configured tokens `presented` is, in time that depends on neither the
/// tokens' lengths nor how much of them `presented` matches: the SHA-256 digests are
/// compared in constant time (comparing the tokens themselves would return early on a
/// length mismatch), and every token is compared, so the count does not leak either.
fn configured(tokens: &[String], org_tokens: &[OrgToken], presented: &str) -> Option<Configured> {
    configured_by(tokens, org_tokens, presented, |a, b| a.ct_eq(b).into())
}

/// [`configured`] with `same` as the comparison of two digests: constant-time in
/// production, observed in the tests.
fn configured_by(
    tokens: &[String],
    org_tokens: &[OrgToken],
    presented: &str,
    same: impl Fn(&[u8], &[u8]) -> bool,
) -> Option<Configured> {
    if presented.is_empty() {
        return None;
    }
    let presented_digest = Sha256::digest(presented.as_bytes());
    let matches = |token: &str| -> bool {
        same(
            Sha256::digest(token.as_bytes()).as_slice(),
            &presented_digest,
        )
    };
    let mut found = None;
    for token in tokens {
        if matches(token) {
            found = Some(Configured::Operator);
        }
    }
    for (i, t) in org_tokens.iter().enumerate() {
        if matches(&t.token) && found.is_none() {
            found = Some(Configured::Org(i));
        }
    }
    found
}

/// Whether `credential` reaches `method` on `route` (the matched route, e.g.
/// `/v1/orgs/{org}/webhooks`) for organization `org`.
fn authorize(
    credential: &Credential,
    method: &Method,
    route: &str,
    org: Option<&str>,
) -> Result<(), ApiError> {
    let Credential::Orgs {
        orgs, read_only, ..
    } = credential
    else {
        return Ok(());
    };
    if route.starts_with("/v1/admin/") {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: "this route is for operators' tokens (api.tokens); this token is limited to organizations".into(),
        });
    }
    if let Some(org) = org
        && !orgs.iter().any(|o| o == org)
    {
        // The same answer as a route that does not exist: nothing about another
        // organization, not even whether it has anything, reaches this token.
        return Err(crate::error::no_such_route());
    }
    if route == MINT_ROUTE {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: "only an operator's token (api.tokens) mints access tokens".into(),
        });
    }
    if *read_only && !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ApiError::Forbidden {
            code: "read_only_token",
            message: "this token is read-only: it may only read".into(),
        });
    }
    Ok(())
}

/// What the presented token may do.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// `operator` (every organization, `/v1/admin/*`) or `organization` (only `orgs`).
    pub kind: String,
    /// The organizations it is limited to; absent for an operator.
    pub orgs: Option<Vec<String>>,
    /// Only reads when true.
    pub read_only: bool,
    /// When it stops working (RFC 3339); absent for a configured token.
    pub expires_at: Option<String>,
}

/// The presented token's reach: what the console shows and hides by.
#[utoipa::path(get, path = "/v1/whoami", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = crate::error::ErrorBody)))]
pub async fn whoami(
    axum::Extension(credential): axum::Extension<Credential>,
) -> axum::Json<WhoAmI> {
    axum::Json(match credential {
        Credential::Operator => WhoAmI {
            kind: "operator".into(),
            orgs: None,
            read_only: false,
            expires_at: None,
        },
        Credential::Orgs {
            orgs,
            read_only,
            expires_at_ms,
        } => WhoAmI {
            kind: "organization".into(),
            orgs: Some(orgs),
            read_only,
            expires_at: expires_at_ms.map(rfc3339),
        },
    })
}

/// Declares the bearer scheme in the OpenAPI document.
#[derive(Debug)]
pub struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org_token(token: &str) -> OrgToken {
        OrgToken {
            token: token.to_owned(),
            orgs: vec!["acme".into()],
            read_only: false,
        }
    }

    #[test]
    fn only_a_whole_configured_token_is_accepted() {
        let tokens = vec![
            "first-token-0123456789".to_owned(),
            "second-token-0123456789".to_owned(),
        ];
        let org_tokens = vec![org_token("acme-token-0123456789")];
        let found = |t| configured(&tokens, &org_tokens, t);
        assert_eq!(found("first-token-0123456789"), Some(Configured::Operator));
        assert_eq!(found("second-token-0123456789"), Some(Configured::Operator));
        assert_eq!(found("acme-token-0123456789"), Some(Configured::Org(0)));
        for wrong in [
            "",
            "first-token-012345678",
            "first-token-0123456789 ",
            "first-token-0123456789first-token-0123456789",
            "FIRST-TOKEN-0123456789",
            "acme-token-012345678",
            "x",
        ] {
            assert_eq!(found(wrong), None, "{wrong:?}");
        }
        assert_eq!(
            configured(&[], &[], ""),
            None,
            "no token configured accepts nothing"
        );
        assert_eq!(
            configured(&[String::new()], &[], ""),
            None,
            "an empty token is never accepted"
        );
    }

    /// What decides a match is a comparison of two 32-byte digests, never of the tokens,
    /// and every configured token is compared whichever matches: so the comparison
    /// (constant-time, `subtle`) takes the same time whatever is presented. Timing
    /// itself is not asserted: a test cannot measure it reliably on a shared machine.
    #[test]
    fn every_token_is_compared_by_its_digest_whatever_is_presented() {
        let tokens = vec![
            "first-token-0123456789".to_owned(),
            "second-token-0123456789".to_owned(),
        ];
        let org_tokens = vec![
            org_token("acme-token-0123456789"),
            org_token(&"x".repeat(64)),
        ];
        for presented in [
            "first-token-0123456789",
            "acme-token-0123456789",
            "f",
            "first-token-012345678",
            &"y".repeat(1000),
        ] {
            let compared = std::cell::RefCell::new(Vec::new());
            let found = configured_by(&tokens, &org_tokens, presented, |a, b| {
                compared.borrow_mut().push((a.len(), b.len()));
                a.ct_eq(b).into()
            });
            assert_eq!(
                found,
                configured(&tokens, &org_tokens, presented),
                "{presented}"
            );
            assert_eq!(
                compared.into_inner(),
                vec![(32, 32); 4],
                "every token, by digest, for {presented:?}"
            );
        }
    }

    fn scoped(read_only: bool) -> Credential {
        Credential::Orgs {
            orgs: vec!["acme".into()],
            read_only,
            expires_at_ms: None,
        }
    }

    fn code(result: Result<(), ApiError>) -> Option<&'static str> {
        result.err().map(|e| e.status_and_code().1)
    }

    #[test]
    fn a_scoped_token_reaches_its_organizations_routes_only() {
        let get = &Method::GET;
        let post = &Method::POST;
        let webhooks = "/v1/orgs/{org}/webhooks";
        assert_eq!(
            code(authorize(&scoped(false), get, webhooks, Some("acme"))),
            None
        );
        assert_eq!(
            code(authorize(&scoped(false), post, webhooks, Some("acme"))),
            None
        );
        assert_eq!(
            code(authorize(&scoped(false), get, "/v1/event-types", None)),
            None
        );
        assert_eq!(
            code(authorize(&scoped(false), get, webhooks, Some("globex"))),
            Some("not_found")
        );
        assert_eq!(
            code(authorize(&scoped(true), post, webhooks, Some("globex"))),
            Some("not_found"),
            "another organization is not found before read-only is considered"
        );
        assert_eq!(
            code(authorize(
                &scoped(false),
                get,
                "/v1/admin/dead-letters",
                None
            )),
            Some("forbidden")
        );
        assert_eq!(
            code(authorize(&scoped(false), post, MINT_ROUTE, Some("acme"))),
            Some("forbidden")
        );
        assert_eq!(
            code(authorize(&scoped(true), post, webhooks, Some("acme"))),
            Some("read_only_token")
        );
        assert_eq!(
            code(authorize(&scoped(true), get, webhooks, Some("acme"))),
            None
        );
        for route in [webhooks, "/v1/admin/dead-letters", MINT_ROUTE] {
            assert_eq!(
                code(authorize(
                    &Credential::Operator,
                    post,
                    route,
                    Some("globex")
                )),
                None
            );
        }
    }
}
