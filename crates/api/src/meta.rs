//! The catalog, health and the OpenAPI document.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::ErrorBody;

/// One event type of the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeView {
    /// Its name: the routing key and the body's `event`.
    pub name: String,
    /// What happened.
    pub description: String,
    /// The fields its body carries besides `event`.
    pub fields: Vec<String>,
    /// Sent by hookwire itself (`webhook_disabled`, `delivery_dead_lettered`).
    pub operational: bool,
}

/// The event catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypes {
    /// Every event type, by name.
    pub event_types: Vec<EventTypeView>,
}

/// Every event type webhooks can subscribe to.
#[utoipa::path(get, path = "/v1/event-types", tag = "meta", security(("bearer" = [])),
    responses((status = 200, body = EventTypes), (status = 401, body = ErrorBody)))]
pub async fn event_types(State(state): State<ApiState>) -> Json<EventTypes> {
    Json(EventTypes {
        event_types: state
            .catalog
            .types()
            .map(|t| EventTypeView {
                name: t.name.clone(),
                description: t.description.clone(),
                fields: t.fields.clone(),
                operational: t.operational,
            })
            .collect(),
    })
}

/// Liveness and readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` with the reasons in `problems`.
    pub status: String,
    /// What is wrong, if anything.
    pub problems: Vec<String>,
    /// Where this node stands in the changes stream, when the store is replicated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationHealth>,
}

/// A node's place in the changes stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicationHealth {
    /// This node's id.
    pub node: String,
    /// The offset of the last change this node applied; absent before the first.
    pub applied_offset: Option<u64>,
    /// Changes received from the stream and not applied yet.
    pub pending: u64,
    /// This node holds every change made before it started; until then it does not
    /// consume deliveries.
    pub caught_up: bool,
    /// The offset of the last batch of the attempts stream this node applied to its
    /// attempt log; absent before the first. Compare nodes to see how far behind one is;
    /// it does not gate readiness.
    pub attempts_applied_offset: Option<u64>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        problems: Vec::new(),
        replication: None,
    })
}

/// The daemon is connected to the broker and consuming, the store answers, and its last
/// durable write succeeded.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Health>) {
    let health = readiness(&state);
    let code = if health.problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health))
}

/// What `/readyz` answers: `ok`, or `unavailable` and why.
fn readiness(state: &ApiState) -> Health {
    let mut problems = Vec::new();
    if !state.broker_ready.load(Ordering::SeqCst) {
        problems.push("not connected to the broker, or not consuming".to_owned());
    }
    // A read proves the store answers; the writer says whether it can be written.
    // Unauthenticated: the detail goes to the log, not to whoever asks.
    if let Err(e) = state.store.list("") {
        tracing::warn!(error = %e, "Readiness: the store cannot be read.");
        problems.push("store cannot be read (see the log)".to_owned());
    }
    if let Err(e) = state.writer.health() {
        tracing::warn!(error = %e, "Readiness: the store cannot be written.");
        problems.push("store cannot be written (see the log)".to_owned());
    }
    let replication = state.writer.replication().map(|r| {
        if !r.caught_up {
            problems.push("catching up with the changes stream".to_owned());
        }
        problems.extend(r.halted.iter().cloned());
        let attempts_applied_offset = state
            .store
            .attempts_applied_offset()
            .inspect_err(
                |e| tracing::warn!(error = %e, "Readiness: the attempts offset cannot be read."),
            )
            .ok()
            .flatten();
        ReplicationHealth {
            node: r.node,
            applied_offset: r.applied_offset,
            pending: r.pending,
            caught_up: r.caught_up,
            attempts_applied_offset,
        }
    });
    let status = if problems.is_empty() {
        "ok"
    } else {
        "unavailable"
    };
    Health {
        status: status.into(),
        problems,
        replication,
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json(
    Extension(spec): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<serde_json::Value> {
    Json(serde_json::to_value(spec.as_ref()).unwrap_or_default())
}

/// Installs the process-wide Prometheus recorder that `/metrics` renders. Histograms get
/// buckets from 1 ms to 60 s, wide enough for attempt latency and end-to-end lag.
pub fn install_metrics_recorder() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    const BUCKETS: &[f64] = &[
        0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// How often [`metrics_upkeep`] folds histogram samples into buckets.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Run it beside a recorder from [`install_metrics_recorder`]: the recorder keeps every
/// histogram sample until it is folded into buckets, which only a scrape of `/metrics` or
/// this upkeep does. Unscraped, that is two f64 samples per delivery, without end.
pub async fn metrics_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP_EVERY);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 404, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<ApiState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), crate::ApiError> {
    let handle = state
        .metrics
        .as_ref()
        .ok_or_else(|| crate::ApiError::NotFound("no metrics recorder is installed".into()))?;
    // Asked at each scrape, so that Prometheus sees what a load balancer's probe would.
    let ready = readiness(&state).problems.is_empty();
    metrics::gauge!("hookwire_ready").set(if ready { 1.0 } else { 0.0 });
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    ))
}
