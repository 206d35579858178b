//! hookwire-api: the admin API, served by `hookwire serve` next to the delivery engine.
//!
//! - [`webhooks`]: create (after a successful test event), list, get, update, delete,
//!   test and rotate-secret, always scoped to one organization.
//! - [`operations`]: the attempt log, and dead letters with replay and purge.
//! - [`meta`]: the event catalog, `/healthz`, `/readyz` and `/openapi.json`.
//! - [`error`]: the one place errors become `{"error":{"code","message"}}`.
//! - [`auth`]: bearer tokens on `/v1`, compared in constant time.

mod auth;
pub mod error;
mod extract;
pub mod meta;
pub mod operations;
mod state;
pub mod webhooks;

use std::future::Future;

use auth::BearerScheme;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, Result};
pub use state::{ApiSettings, ApiState, Circuits};

#[derive(OpenApi)]
#[openapi(
    info(title = "hookwire admin API", description = "Manage organization webhooks: Mode-style event subscriptions delivered by hookwire."),
    modifiers(&BearerScheme),
    tags((name = "webhooks"), (name = "operations"), (name = "meta"))
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
        .routes(routes!(operations::attempts))
        .routes(routes!(operations::dead_letters))
        .routes(routes!(operations::replay))
        .routes(routes!(operations::purge))
        .routes(routes!(operations::orgless_dead_letters))
        .routes(routes!(operations::orgless_purge))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(v1)
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::openapi_json))
        .routes(routes!(meta::metrics))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state.clone())
        .split_for_parts();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let spec = openapi.clone();
    let router = router
        .layer(axum::Extension(std::sync::Arc::new(spec)))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    (router, openapi)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (router, _) = router(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
