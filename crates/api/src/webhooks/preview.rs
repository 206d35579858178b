//! Previewing a transform: what a webhook would be sent for a sample event, without
//! sending anything. The sample is the catalog's example of an event type, or a body the
//! caller gives; the transform is the one given, else the webhook's own.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use hookwire_core::event::webhook_id;
use hookwire_core::{Catalog, FilterInput, Subscription, Transform, Transformed, now_ms};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{check_org, check_transform, load_sound};
use crate::error::ErrorBody;
use crate::extract::Json;
use crate::{ApiError, ApiState, Result};

/// What the `webhook-signature` header shows in a preview: a preview signs nothing, so
/// that it can never be a way to have arbitrary bytes signed with a webhook's secret.
pub const SIGNATURE_PLACEHOLDER: &str = "(computed at delivery over the body shown)";

/// What shows in place of a secret header's value.
pub const SECRET_PLACEHOLDER: &str = "(secret)";

/// A sample event and, optionally, the transform to run on it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The sample's event type, one of the catalog's.
    pub event_type: String,
    /// The sample's body (a JSON object); absent: the catalog's example of `event_type`.
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
    /// The transform to run (a draft being edited); absent: the webhook's own. A draft
    /// preview without one shows the sample's body sent as it is.
    #[schema(max_length = 4096)]
    pub transform: Option<String>,
}

/// What would be sent for the sample.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// Whether a transform made the body (false: the sample's body as it is).
    pub transformed: bool,
    /// The exact body that would be sent and signed, as text.
    pub body: String,
    /// Its size in bytes.
    pub body_bytes: u64,
    /// Its hex SHA-256, as the attempt log records it for a transformed body.
    pub sha256: String,
    /// The request's headers, by lower-case name: the webhook's own (secret values
    /// hidden), then hookwire's. `webhook-signature` is computed at delivery.
    pub headers: BTreeMap<String, String>,
}

/// The catalog's example of `event_type`: `event` and each of its fields, URLs on
/// `example.com`.
pub fn example_body(catalog: &Catalog, event_type: &str) -> Option<serde_json::Value> {
    let kind = catalog.get(event_type)?;
    let mut body = serde_json::Map::new();
    body.insert("event".into(), event_type.into());
    for field in &kind.fields {
        let name = field.strip_suffix("_url").unwrap_or(field);
        body.insert(
            field.clone(),
            format!("https://example.com/{name}/example").into(),
        );
    }
    Some(body.into())
}

/// Runs the transform (the request's, else `sub`'s) on the request's sample.
fn preview(
    state: &ApiState,
    request: PreviewRequest,
    sub: Option<&Subscription>,
) -> Result<Preview> {
    if state.catalog.get(&request.event_type).is_none() {
        return Err(ApiError::unprocessable(
            "invalid_events",
            format!(
                "unknown event type `{}`; valid types: {}",
                request.event_type,
                state.catalog.names_joined()
            ),
        ));
    }
    let body = match request.body {
        Some(body @ serde_json::Value::Object(_)) => body,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_sample",
                "the sample `body` is a JSON object",
            ));
        }
        None => example_body(&state.catalog, &request.event_type).unwrap_or_default(),
    };
    let body = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let transform: Option<Transform> = match request.transform {
        Some(source) => Some(check_transform(&source)?),
        None => sub.and_then(|s| s.transform.clone()),
    };
    let sent = match &transform {
        None => body,
        Some(transform) => transform
            .apply(&FilterInput::new(&request.event_type, &body))
            .map_err(|e| {
                ApiError::unprocessable(
                    "transform_error",
                    format!("the transform gives no body for this sample: {e}"),
                )
            })?,
    };
    let digest = Transformed::of(&sent);
    let mut headers = BTreeMap::new();
    for header in sub.map(|s| s.headers.as_slice()).unwrap_or_default() {
        let value = match header.secret {
            true => SECRET_PLACEHOLDER.to_owned(),
            false => header.value.clone(),
        };
        headers.insert(header.name.clone(), value);
    }
    let now = now_ms();
    let delivery = format!("preview_{now}");
    let message_id = match sub {
        Some(sub) => webhook_id(&delivery, &sub.id),
        None => webhook_id(&delivery, &uuid::Uuid::nil()),
    };
    for (name, value) in [
        ("content-type", "application/json".to_owned()),
        ("user-agent", hookwire_core::USER_AGENT.to_owned()),
        ("webhook-id", message_id),
        ("webhook-timestamp", (now / 1000).to_string()),
        ("webhook-signature", SIGNATURE_PLACEHOLDER.to_owned()),
    ] {
        headers.insert(name.to_owned(), value);
    }
    Ok(Preview {
        transformed: transform.is_some(),
        body: String::from_utf8_lossy(&sent).into_owned(),
        body_bytes: digest.bytes,
        sha256: digest.sha256,
        headers,
    })
}

/// Shows what the webhook would be sent for a sample event: its transform (or the one
/// given) run on the catalog's example of a type, or on a given body. Nothing is sent.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks/{id}/transform/preview", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id")),
    request_body = PreviewRequest,
    responses((status = 200, body = Preview), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`invalid_transform`, `transform_error` (it gives no body for the sample), `invalid_events` or `invalid_sample`")))]
pub async fn preview_transform(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
    Json(request): Json<PreviewRequest>,
) -> Result<axum::Json<Preview>> {
    let sub = load_sound(&state, &org, &id).await?;
    Ok(axum::Json(preview(&state, request, Some(&sub))?))
}

/// Shows what a webhook not yet created would be sent for a sample event with the given
/// transform. Nothing is sent.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks/transform/preview", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization")),
    request_body = PreviewRequest,
    responses((status = 200, body = Preview), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`invalid_transform`, `transform_error` (it gives no body for the sample), `invalid_events` or `invalid_sample`")))]
pub async fn preview_draft_transform(
    State(state): State<ApiState>,
    Path(org): Path<String>,
    Json(request): Json<PreviewRequest>,
) -> Result<axum::Json<Preview>> {
    check_org(&org)?;
    Ok(axum::Json(preview(&state, request, None)?))
}
