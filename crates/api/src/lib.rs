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
mod state;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use auth::BearerScheme;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, Result};
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
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(v1)
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::openapi_json))
        .routes(routes!(meta::metrics))
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

/// Serves the API on `listener` until `shutdown` completes, then lets open requests finish.
///
/// axum's own `serve` sets no timer, so hyper would wait forever for a request head; this
/// loop sets `api.header_read_timeout`, and holds at most `api.max_connections`
/// connections, so slow or idle clients cannot use up the descriptors deliveries need.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_read_timeout = state.config.header_read_timeout;
    let connections = Arc::new(Semaphore::new(state.config.max_connections));
    let (router, _) = router(state);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a receiver; `closed()` resolves when the last is gone.
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
        };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "The API cannot accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "An API connection ended with an error.");
                    }
                }
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop((permit, done));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}
