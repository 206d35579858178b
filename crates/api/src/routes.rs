//! The routes: the API's, documented in OpenAPI as they are registered, and the
//! operations port's.

use crate::auth::{self, BearerScheme};
use crate::error::ApiError;
use crate::state::ApiState;
use crate::{access, backup, console, error, meta, operations, resend, webhooks};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "hookwire admin API", description = "Manage organization webhooks: Mode-style event subscriptions delivered by hookwire."),
    modifiers(&BearerScheme),
    tags((name = "webhooks"), (name = "operations"), (name = "access"), (name = "meta"))
)]
struct ApiDoc;

/// The router and the OpenAPI document describing exactly its routes.
pub fn router(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(meta::event_types))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::rotate_ed25519_key))
        .routes(routes!(webhooks::preview_transform))
        .routes(routes!(webhooks::preview_draft_transform))
        .routes(routes!(resend::resend))
        .routes(routes!(operations::attempts))
        .routes(routes!(operations::dead_letters))
        .routes(routes!(operations::replay))
        .routes(routes!(operations::purge))
        .routes(routes!(operations::orgless_dead_letters))
        .routes(routes!(operations::orgless_replay))
        .routes(routes!(operations::orgless_purge))
        .routes(routes!(operations::orgs))
        .routes(routes!(backup::export))
        .routes(routes!(access::mint))
        .routes(routes!(auth::whoami))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let mut routes = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(v1)
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::openapi_json));
    if !state.config.ops_listener {
        routes = routes
            .routes(routes!(meta::readyz))
            .routes(routes!(meta::metrics));
    }
    let (router, mut openapi) = routes
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ))
        .with_state(state.clone())
        .split_for_parts();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let spec = openapi.clone();
    let router = router
        .layer(axum::Extension(std::sync::Arc::new(spec)))
        .merge(console::router(state))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    (router, openapi)
}

/// The operations port's routes (`api.ops_listen`): health and metrics, unauthenticated.
pub fn ops_router(state: ApiState) -> Router {
    use axum::routing::get;
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ))
        .with_state(state)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
}

/// Answers 408 when the handler (its body read included) outlasts `api.request_timeout`.
async fn request_deadline(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let limit = state.config.request_timeout;
    tokio::time::timeout(limit, next.run(request))
        .await
        .map_err(|_| ApiError::RequestTimeout(limit))
}
