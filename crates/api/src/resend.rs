//! Resending kept events to a webhook: one event by id, or every event an organization
//! received between two times, a page at a time. Each goes through the normal delivery
//! path as a fresh task on the work exchange: a fresh attempt budget, the same
//! `webhook-id` as the original delivery (it is derived from the event id and the
//! webhook), the webhook's filter and event types applied.

use axum::extract::{Path, State};
use hookwire_amqp::wire::Task;
use hookwire_core::{FilterInput, Subscription, now_ms};
use hookwire_store::Payload;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ErrorBody;
use crate::extract::Json;
use crate::operations::{cursor_error, rfc3339, time_ms};
use crate::webhooks::load_sound;
use crate::{ApiError, ApiState, Result};

mod budget;

pub use budget::ResendBudget;

/// The most events one request resends; a range with more answers a `next_cursor`.
pub const MAX_RESEND: usize = 500;

/// What to resend: `event_id`, or a range `from`–`to`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// This event (its id, as the producer published it).
    pub event_id: Option<String>,
    /// Every event received at or after this time (RFC 3339)…
    pub from: Option<String>,
    /// …and before this one (RFC 3339).
    pub to: Option<String>,
    /// Continue a range after the previous answer's `next_cursor`.
    pub cursor: Option<String>,
    /// The most events of a range to resend in this request: 1 to 500 (the default).
    pub limit: Option<usize>,
}

/// One event resent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResentEvent {
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The `webhook-id` the receiver will see: the original delivery's.
    pub message_id: String,
    /// When hookwire first received it (RFC 3339).
    pub received_at: String,
}

/// One event of a range that was not resent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SkippedEvent {
    /// The event.
    pub event_id: String,
    /// `not_subscribed` (the webhook does not listen to its type now) or `filtered` (its
    /// filter refuses it now).
    pub reason: String,
}

/// What a resend queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResendResult {
    /// Published to the deliveries queue, confirmed by the broker, in receipt order.
    pub queued: Vec<ResentEvent>,
    /// Events of the range the webhook would not get now.
    pub skipped: Vec<SkippedEvent>,
    /// More events of the range remain: send the same request with this `cursor`. Null
    /// at the end of the range, and for one event.
    pub next_cursor: Option<String>,
}

/// Why `sub` would not get `payload` now.
fn refusal(sub: &Subscription, payload: &Payload) -> Option<(&'static str, String)> {
    if !sub.listens_to(&payload.event_type) {
        return Some((
            "not_subscribed",
            format!(
                "webhook {} does not subscribe to `{}`, the type of event `{}`",
                sub.id, payload.event_type, payload.event_id
            ),
        ));
    }
    let filter = sub.filter.as_ref()?;
    match filter.matches(&FilterInput::new(&payload.event_type, &payload.body)) {
        Ok(true) => None,
        Ok(false) => Some((
            "filtered",
            format!(
                "the filter of webhook {} refuses event `{}`",
                sub.id, payload.event_id
            ),
        )),
        Err(e) => Some((
            "filtered",
            format!(
                "the filter of webhook {} fails on event `{}`: {e}",
                sub.id, payload.event_id
            ),
        )),
    }
}

fn resent(payload: &Payload, task: &Task) -> ResentEvent {
    ResentEvent {
        event_id: payload.event_id.clone(),
        event_type: payload.event_type.clone(),
        message_id: task.webhook_id(),
        received_at: rfc3339(payload.received_at_ms),
    }
}

/// A fresh task: no attempt made, `delivery.max_age` counted from now.
fn task(sub: &Subscription, payload: &Payload) -> Task {
    Task::new(
        &payload.event_id,
        &sub.org,
        &payload.event_type,
        sub.id,
        now_ms(),
        None,
    )
}

/// Resends one kept event, or the events received in a range, to this webhook.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks/{id}/resend", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id")),
    request_body = ResendRequest,
    responses((status = 200, body = ResendResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "`resend_rate_limited`: the webhook's or its organization's resend budget is used up; `Retry-After` says when to try again"),
        (status = 503, body = ErrorBody)))]
pub async fn resend(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
    Json(request): Json<ResendRequest>,
) -> Result<axum::Json<ResendResult>> {
    let sub = load_sound(&state, &org, &id).await?;
    let result = match (&request.event_id, &request.from, &request.to) {
        (Some(event_id), None, None) => {
            if request.cursor.is_some() || request.limit.is_some() {
                return Err(ApiError::unprocessable(
                    "invalid_selection",
                    "`cursor` and `limit` go with a range (`from`, `to`), not with `event_id`",
                ));
            }
            resend_one(&state, &sub, event_id).await?
        }
        (None, Some(from), Some(to)) => resend_range(&state, &sub, from, to, &request).await?,
        (None, None, None) => {
            return Err(ApiError::unprocessable(
                "invalid_selection",
                "give `event_id`, or a range `from` and `to` (RFC 3339)",
            ));
        }
        (None, _, _) => {
            return Err(ApiError::unprocessable(
                "invalid_range",
                "a range needs both `from` and `to` (RFC 3339)",
            ));
        }
        (Some(_), _, _) => {
            return Err(ApiError::unprocessable(
                "invalid_selection",
                "give `event_id` or a range `from`–`to`, not both",
            ));
        }
    };
    tracing::info!(%org, webhook_id = %sub.id, queued = result.queued.len(), skipped = result.skipped.len(), "Events resent.");
    Ok(axum::Json(result))
}

/// Up to `wanted` events of the node's resend budget for `sub` and its organization, or
/// 429 with how long to wait.
fn take_budget(state: &ApiState, sub: &Subscription, wanted: usize) -> Result<usize> {
    state
        .resend_budget
        .take(&sub.org, sub.id, wanted)
        .map_err(|retry_after| ApiError::TooManyRequests {
            code: "resend_rate_limited",
            message: format!(
                "webhook {} or its organization has used its resend budget; try again in {} ms",
                sub.id,
                retry_after.as_millis().max(1)
            ),
            retry_after,
        })
}

/// A disabled webhook's tasks would be dropped unseen: refused instead.
fn check_enabled(sub: &Subscription) -> Result<()> {
    if sub.enabled {
        return Ok(());
    }
    Err(ApiError::Conflict {
        code: "webhook_disabled",
        message: format!(
            "webhook {} is disabled; enable it before resending to it",
            sub.id
        ),
    })
}

async fn resend_one(state: &ApiState, sub: &Subscription, event_id: &str) -> Result<ResendResult> {
    if event_id.is_empty() || event_id.len() > 255 {
        return Err(ApiError::BadRequest {
            code: "invalid_event_id",
            message: "an event id has 1 to 255 bytes".into(),
        });
    }
    check_enabled(sub)?;
    take_budget(state, sub, 1)?;
    let payload = state.store.payload(&sub.org, event_id)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "organization `{}` has no kept event `{event_id}`: it was never received, or it is older than store.payload_retention",
            sub.org
        ))
    })?;
    if let Some((code, message)) = refusal(sub, &payload) {
        return Err(ApiError::unprocessable(code, message));
    }
    let task = task(sub, &payload);
    publish(state, &[(task.clone(), payload.body.as_slice())]).await?;
    Ok(ResendResult {
        queued: vec![resent(&payload, &task)],
        skipped: Vec::new(),
        next_cursor: None,
    })
}

async fn resend_range(
    state: &ApiState,
    sub: &Subscription,
    from: &str,
    to: &str,
    request: &ResendRequest,
) -> Result<ResendResult> {
    let from_ms = time_ms("from", Some(&from.to_owned()))?.unwrap_or(0);
    let to_ms = time_ms("to", Some(&to.to_owned()))?.unwrap_or(0);
    if from_ms >= to_ms {
        return Err(ApiError::unprocessable(
            "invalid_range",
            format!("`from` ({from}) must be before `to` ({to})"),
        ));
    }
    let limit = request.limit.unwrap_or(MAX_RESEND);
    if !(1..=MAX_RESEND).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_limit",
            message: format!("limit is 1 to {MAX_RESEND}"),
        });
    }
    check_enabled(sub)?;
    // A page is cut to what the budget allows now; its `next_cursor` carries on from there.
    let granted = take_budget(state, sub, limit)?;
    let page = state
        .store
        .payloads(&sub.org, from_ms, to_ms, request.cursor.as_deref(), granted)
        .map_err(cursor_error);
    let unused = page
        .as_ref()
        .map_or(granted, |p| granted - p.items.len().min(granted));
    state.resend_budget.give_back(&sub.org, sub.id, unused);
    let page = page?;
    let mut result = ResendResult {
        queued: Vec::new(),
        skipped: Vec::new(),
        next_cursor: page.next_cursor,
    };
    // Bodies are read and published a chunk at a time: a page of them could be hundreds
    // of large bodies.
    for chunk in page.items.chunks(32) {
        let mut bodies = Vec::new();
        for listed in chunk {
            // Pruned since it was listed: nothing to resend.
            let Some(payload) = state.store.payload(&sub.org, &listed.event_id)? else {
                continue;
            };
            match refusal(sub, &payload) {
                Some((reason, _)) => result.skipped.push(SkippedEvent {
                    event_id: payload.event_id,
                    reason: reason.to_owned(),
                }),
                None => bodies.push((task(sub, &payload), payload)),
            }
        }
        let tasks: Vec<(Task, &[u8])> = bodies
            .iter()
            .map(|(task, payload)| (task.clone(), payload.body.as_slice()))
            .collect();
        publish(state, &tasks).await?;
        result
            .queued
            .extend(bodies.iter().map(|(task, payload)| resent(payload, task)));
    }
    Ok(result)
}

async fn publish(state: &ApiState, tasks: &[(Task, &[u8])]) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    state.replayer.resend(tasks).await.map_err(|e| {
        tracing::warn!(error = %e, "Resent events could not be published.");
        ApiError::Unavailable {
            code: "broker_unavailable",
            message: format!("the broker did not accept the resent events: {e}"),
        }
    })
}
