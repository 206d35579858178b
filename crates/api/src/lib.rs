//! hookwire-api: the admin API, served by `hookwire serve` next to the delivery engine.
//!
//! - [`webhooks`]: create (after a successful test event), list, get, update, delete,
//!   test and rotate-secret, always scoped to one organization.
//! - [`operations`]: the attempt log, and dead letters with replay and purge.
//! - [`resend`]: resending kept events to a webhook, one or a range.
//! - [`meta`]: the event catalog, `/healthz`, `/readyz` and `/openapi.json`.
//! - [`error`]: the one place errors become `{"error":{"code","message"}}`.
//! - [`auth`]: bearer tokens on `/v1`, compared in constant time, and what each may reach:
//!   operators every route, tokens limited to organizations only theirs.
//! - [`console`]: the web console's files, embedded, at `/console/`.
//! - [`serve`]: the accept loops, which bound what each connection may hold.
//! - [`access`]: access tokens, minted by an operator for one organization and signed,
//!   so any node verifies them without a store lookup.

pub mod access;
pub mod auth;
pub mod console;
pub mod error;
mod extract;
pub mod meta;
pub mod operations;
pub mod resend;
mod server;
mod state;
pub mod webhooks;

use auth::BearerScheme;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, Result};
pub use server::{Listeners, MAX_STREAMS_PER_CONNECTION, serve};
pub use state::{ApiSettings, ApiState, Circuits};

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
        .routes(routes!(resend::resend))
        .routes(routes!(operations::attempts))
        .routes(routes!(operations::dead_letters))
        .routes(routes!(operations::replay))
        .routes(routes!(operations::purge))
        .routes(routes!(operations::orgless_dead_letters))
        .routes(routes!(operations::orgless_purge))
        .routes(routes!(operations::orgs))
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
