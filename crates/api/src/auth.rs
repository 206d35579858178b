//! Bearer-token authentication of `/v1`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{ApiError, ApiState};

/// Lets a request through only with one of the configured tokens. The SHA-256 digests of
/// the presented and the configured tokens are compared in constant time: comparing the
/// tokens themselves would return early on a length mismatch, and so reveal the length.
pub async fn require_bearer(
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
    if !accepts(&state.config.tokens, presented) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// Whether `presented` is one of `tokens`, in time that depends on neither the tokens'
/// lengths nor how much of them `presented` matches.
fn accepts(tokens: &[String], presented: &str) -> bool {
    let presented_digest = Sha256::digest(presented.as_bytes());
    let mut accepted = subtle::Choice::from(0);
    for token in tokens {
        // Every token is compared, so the count of comparisons does not leak either.
        accepted |= Sha256::digest(token.as_bytes())
            .as_slice()
            .ct_eq(presented_digest.as_slice());
    }
    bool::from(accepted) && !presented.is_empty()
}

/// Declares the bearer scheme in the OpenAPI document.
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
    use super::accepts;

    #[test]
    fn only_a_whole_configured_token_is_accepted() {
        let tokens = vec![
            "first-token-0123456789".to_owned(),
            "second-token-0123456789".to_owned(),
        ];
        assert!(accepts(&tokens, "first-token-0123456789"));
        assert!(accepts(&tokens, "second-token-0123456789"));
        for wrong in [
            "",
            "first-token-012345678",
            "first-token-0123456789 ",
            "first-token-0123456789first-token-0123456789",
            "FIRST-TOKEN-0123456789",
            "x",
        ] {
            assert!(!accepts(&tokens, wrong), "{wrong:?}");
        }
        assert!(!accepts(&[], ""), "no token configured accepts nothing");
        assert!(
            !accepts(&[String::new()], ""),
            "an empty token is never accepted"
        );
    }
}
