//! Bearer-token authentication of `/v1`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{ApiError, ApiState};

/// Lets a request through only with one of the configured tokens. Tokens are compared in
/// constant time, so response timing does not reveal how much of a guess was right.
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
    let mut accepted = false;
    for token in &state.config.tokens {
        // Every token is compared, so the count of comparisons does not leak either.
        accepted |=
            bool::from(token.as_bytes().ct_eq(presented.as_bytes())) && !presented.is_empty();
    }
    if !accepted {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
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
