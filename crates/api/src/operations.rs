//! What an operator needs after the fact: the attempt log, and the dead letters with
//! replay and purge.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, State};
use hookwire_amqp::wire::Replay;
use hookwire_store::{AttemptQuery, Change, DeadLetter, DeadLetterQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ErrorBody;
use crate::extract::{Json, Query};
use crate::webhooks::{check_org, load};
use crate::{ApiError, ApiState, Result};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 500;

/// One HTTP attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// The webhook.
    pub webhook_id: Uuid,
    /// The event.
    pub event_id: String,
    /// The `webhook-id` header, the same for every attempt of one delivery.
    pub message_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// RFC 3339.
    pub at: String,
    /// `delivered`, `retry`, `permanent` or `gone`.
    pub outcome: String,
    /// The HTTP status, when one came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// `timeout`, `connect`, `tls` (the TLS handshake failed), `target_refused` or `other`.
    pub error_kind: Option<String>,
    /// The failure in words.
    pub error: Option<String>,
    /// At most 1 KiB of the response body.
    pub response_excerpt: String,
    /// The size and SHA-256 of the body sent, when the webhook's transform made it; null
    /// when the event's body was sent as it is.
    pub transformed: Option<SentBody>,
}

/// What a transform made and an attempt sent (and signed) in place of the event's body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SentBody {
    /// Its size in bytes.
    pub bytes: u64,
    /// Its hex SHA-256.
    pub sha256: String,
}

impl From<hookwire_core::Transformed> for SentBody {
    fn from(t: hookwire_core::Transformed) -> Self {
        Self {
            bytes: t.bytes,
            sha256: t.sha256,
        }
    }
}

/// A page of attempts, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptPage {
    /// The attempts.
    pub attempts: Vec<Attempt>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// Filters of the attempt log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptParams {
    /// Only `delivered`, `retry`, `permanent` or `gone`.
    pub outcome: Option<String>,
    /// Not before (RFC 3339).
    pub since: Option<String>,
    /// Before (RFC 3339).
    pub until: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (100).
    pub limit: Option<usize>,
}

/// A message that could not be delivered, kept until replayed or purged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    /// Its id, for replay and purge.
    pub id: Uuid,
    /// The organization, when the message had a valid one.
    pub org: Option<String>,
    /// The webhook, for a failed delivery.
    pub webhook_id: Option<Uuid>,
    /// The event id.
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The `x-hookwire-reason`.
    pub reason: String,
    /// The reason in words.
    pub detail: String,
    /// Attempts made.
    pub attempts: u32,
    /// RFC 3339.
    pub dead_at: String,
    /// The size of the message's body when it died.
    pub body_bytes: u64,
    /// The archive kept only the first bytes of the body: it cannot be replayed.
    pub truncated: bool,
    /// The body as text (its first bytes when `truncated`); only with `include=body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// What its last attempt sent, when the webhook's transform made the body: `body` is
    /// still the event's, which a replay transforms again with the webhook's transform.
    /// Null when the event's body was sent as it is, or nothing was sent.
    pub transformed: Option<SentBody>,
}

/// A page of dead letters, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterList {
    /// The dead letters.
    pub dead_letters: Vec<DeadLetterView>,
    /// Pass it as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of the dead letters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this webhook's.
    pub webhook_id: Option<Uuid>,
    /// Not before (RFC 3339).
    pub since: Option<String>,
    /// Before (RFC 3339).
    pub until: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (100).
    pub limit: Option<usize>,
    /// `body`: each letter's body too. Without it a page carries no bodies.
    pub include: Option<String>,
}

/// Which dead letters to replay: by ids, by webhook, or by time.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// These dead letters.
    pub ids: Option<Vec<Uuid>>,
    /// Every dead letter of this webhook.
    pub webhook_id: Option<Uuid>,
    /// Dead since (RFC 3339).
    pub since: Option<String>,
    /// Dead before (RFC 3339).
    pub until: Option<String>,
}

/// What a replay did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayResult {
    /// Published back, with a fresh retry budget, and removed from the archive.
    pub replayed: Vec<Uuid>,
    /// Not replayed, with why; they stay archived.
    pub failed: Vec<ReplayFailure>,
}

/// One dead letter that could not be replayed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayFailure {
    /// Its id.
    pub id: Uuid,
    /// Why.
    pub error: String,
}

/// Which dead letters to purge: by ids, or all dead before a time.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// These dead letters.
    pub ids: Option<Vec<Uuid>>,
    /// Every dead letter archived before this time (RFC 3339).
    pub before: Option<String>,
}

/// What a purge did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurgeResult {
    /// How many were removed.
    pub purged: usize,
}

pub(crate) fn time_ms(field: &str, value: Option<&String>) -> Result<Option<u64>> {
    value
        .map(|text| {
            let at = humantime::parse_rfc3339_weak(text).map_err(|e| ApiError::BadRequest {
                code: "invalid_time",
                message: format!("`{field}` is not an RFC 3339 time: {e}"),
            })?;
            Ok(at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        })
        .transpose()
}

pub(crate) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn view(d: DeadLetter, with_body: bool) -> DeadLetterView {
    DeadLetterView {
        id: d.id,
        org: d.org,
        webhook_id: d.subscription_id,
        event_id: d.event_id,
        event_type: d.event_type,
        reason: d.reason,
        detail: d.detail,
        attempts: d.attempts,
        dead_at: rfc3339(d.dead_at_ms),
        body_bytes: d.body_bytes,
        truncated: d.truncated,
        body: with_body.then(|| String::from_utf8_lossy(&d.body).into_owned()),
        transformed: d.transformed.map(SentBody::from),
    }
}

/// A webhook's attempts, oldest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/orgs/{org}/webhooks/{id}/attempts", tag = "operations", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id"), AttemptParams),
    responses((status = 200, body = AttemptPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attempts(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
    Query(params): Query<AttemptParams>,
) -> Result<axum::Json<AttemptPage>> {
    let sub = load(&state, &org, &id).await?;
    let query = AttemptQuery {
        outcome: params.outcome,
        since_ms: time_ms("since", params.since.as_ref())?,
        until_ms: time_ms("until", params.until.as_ref())?,
        cursor: params.cursor,
        limit: page_size(params.limit)?,
    };
    let page = state
        .store
        .attempts(&sub.id, &query)
        .map_err(cursor_error)?;
    let attempts = page
        .items
        .into_iter()
        .map(|r| Attempt {
            webhook_id: r.subscription_id,
            event_id: r.event_id,
            message_id: r.message_id,
            attempt: r.attempt,
            at: rfc3339(r.at_ms),
            outcome: r.outcome,
            status: r.status,
            latency_ms: r.latency_ms,
            error_kind: r.error_kind,
            error: r.error,
            response_excerpt: r.response_excerpt,
            transformed: r.transformed.map(SentBody::from),
        })
        .collect();
    Ok(axum::Json(AttemptPage {
        attempts,
        next_cursor: page.next_cursor,
    }))
}

/// The page size a request asked for, or the default.
fn page_size(limit: Option<usize>) -> Result<usize> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: format!("limit is 1 to {MAX_PAGE}"),
        });
    }
    Ok(limit)
}

/// A cursor the store did not hand out is the client's mistake.
pub(crate) fn cursor_error(e: hookwire_store::Error) -> ApiError {
    match e {
        hookwire_store::Error::InvalidCursor(_) => ApiError::BadRequest {
            code: "invalid_cursor",
            message: e.to_string(),
        },
        other => other.into(),
    }
}

fn dead_letter_page(
    state: &ApiState,
    org: Option<&str>,
    params: DeadLetterParams,
) -> Result<axum::Json<DeadLetterList>> {
    let bodies = match params.include.as_deref() {
        None => false,
        Some("body") => true,
        Some(other) => {
            return Err(ApiError::BadRequest {
                code: "invalid_query",
                message: format!("include is `body`, not `{other}`"),
            });
        }
    };
    let query = DeadLetterQuery {
        ids: None,
        subscription_id: params.webhook_id,
        since_ms: time_ms("since", params.since.as_ref())?,
        until_ms: time_ms("until", params.until.as_ref())?,
        cursor: params.cursor,
        limit: page_size(params.limit)?,
        bodies,
    };
    let page = state
        .store
        .dead_letters(org, &query)
        .map_err(cursor_error)?;
    Ok(axum::Json(DeadLetterList {
        dead_letters: page.items.into_iter().map(|d| view(d, bodies)).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The dead letters of `org` that `query` selects, without their bodies, a page at a
/// time. A cursor is a position, not an index, so the caller may remove each page's
/// letters as it goes.
fn dead_letter_pages<'a>(
    state: &'a ApiState,
    org: Option<&'a str>,
    mut query: DeadLetterQuery,
) -> impl Iterator<Item = Result<Vec<DeadLetter>>> + 'a {
    query.limit = MAX_PAGE;
    query.bodies = false;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let page = match state.store.dead_letters(org, &query) {
            Ok(page) => page,
            Err(e) => {
                done = true;
                return Some(Err(e.into()));
            }
        };
        query.cursor = page.next_cursor;
        done = query.cursor.is_none();
        Some(Ok(page.items))
    })
}

/// The organization's dead letters.
#[utoipa::path(get, path = "/v1/orgs/{org}/dead-letters", tag = "operations", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), DeadLetterParams),
    responses((status = 200, body = DeadLetterList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn dead_letters(
    State(state): State<ApiState>,
    Path(org): Path<String>,
    Query(params): Query<DeadLetterParams>,
) -> Result<axum::Json<DeadLetterList>> {
    check_org(&org)?;
    dead_letter_page(&state, Some(&org), params)
}

/// Dead letters that belong to no organization: events whose `org` was missing or invalid.
#[utoipa::path(get, path = "/v1/admin/dead-letters", tag = "operations", security(("bearer" = [])),
    params(DeadLetterParams),
    responses((status = 200, body = DeadLetterList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn orgless_dead_letters(
    State(state): State<ApiState>,
    Query(params): Query<DeadLetterParams>,
) -> Result<axum::Json<DeadLetterList>> {
    dead_letter_page(&state, None, params)
}

/// Publishes dead letters back: failed deliveries to the work queue with a fresh retry
/// budget, events to the events exchange. Each one replayed leaves the archive.
#[utoipa::path(post, path = "/v1/orgs/{org}/dead-letters/replay", tag = "operations", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization")),
    request_body = ReplayRequest,
    responses((status = 200, body = ReplayResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replay(
    State(state): State<ApiState>,
    Path(org): Path<String>,
    Json(request): Json<ReplayRequest>,
) -> Result<axum::Json<ReplayResult>> {
    check_org(&org)?;
    replay_in(&state, Some(&org), request).await
}

/// Publishes dead letters that belong to no organization back to the events exchange.
/// Only letters without an organization are selected, whatever the ids given.
#[utoipa::path(post, path = "/v1/admin/dead-letters/replay", tag = "operations", security(("bearer" = [])),
    request_body = ReplayRequest,
    responses((status = 200, body = ReplayResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn orgless_replay(
    State(state): State<ApiState>,
    Json(request): Json<ReplayRequest>,
) -> Result<axum::Json<ReplayResult>> {
    replay_in(&state, None, request).await
}

/// Replays the dead letters of `org` (`None`: those without one) that `request` selects.
async fn replay_in(
    state: &ApiState,
    org: Option<&str>,
    request: ReplayRequest,
) -> Result<axum::Json<ReplayResult>> {
    if request.ids.is_none()
        && request.webhook_id.is_none()
        && request.since.is_none()
        && request.until.is_none()
    {
        return Err(ApiError::unprocessable(
            "invalid_selection",
            "give `ids`, `webhook_id`, or `since`/`until`",
        ));
    }
    let query = DeadLetterQuery {
        ids: request.ids,
        subscription_id: request.webhook_id,
        since_ms: time_ms("since", request.since.as_ref())?,
        until_ms: time_ms("until", request.until.as_ref())?,
        ..DeadLetterQuery::default()
    };
    let mut result = ReplayResult {
        replayed: Vec::new(),
        failed: Vec::new(),
    };
    for page in dead_letter_pages(state, org, query) {
        for listed in page? {
            // One body at a time: a page of them could be hundreds of large bodies.
            let Some(dead) = state.store.dead_letter(org, &listed.id)? else {
                continue;
            };
            match state.replayer.replay(&replay_of(&dead)).await {
                Ok(()) => {
                    state
                        .writer
                        .commit(Change::RemoveDeadLetters {
                            org: org.map(str::to_owned),
                            ids: vec![dead.id],
                        })
                        .await?;
                    result.replayed.push(dead.id);
                }
                Err(e) => result.failed.push(ReplayFailure {
                    id: dead.id,
                    error: e.to_string(),
                }),
            }
        }
    }
    tracing::info!(
        org = org.unwrap_or("-"),
        replayed = result.replayed.len(),
        failed = result.failed.len(),
        "Dead letters replayed."
    );
    Ok(axum::Json(result))
}

/// What the replayer needs of a dead letter.
fn replay_of(dead: &DeadLetter) -> Replay<'_> {
    Replay {
        id: dead.id,
        org: dead.org.as_deref(),
        subscription_id: dead.subscription_id,
        event_id: dead.event_id.as_deref(),
        event_type: dead.event_type.as_deref(),
        body: &dead.body,
        truncated: dead.truncated,
        traceparent: dead.traceparent.as_deref(),
        tracestate: dead.tracestate.as_deref(),
    }
}

async fn purge_in(
    state: &ApiState,
    org: Option<&str>,
    request: PurgeRequest,
) -> Result<axum::Json<PurgeResult>> {
    let before = time_ms("before", request.before.as_ref())?;
    if request.ids.is_none() && before.is_none() {
        return Err(ApiError::unprocessable(
            "invalid_selection",
            "give `ids` or `before`",
        ));
    }
    let query = DeadLetterQuery {
        ids: request.ids,
        until_ms: before,
        ..DeadLetterQuery::default()
    };
    let mut ids = Vec::new();
    for page in dead_letter_pages(state, org, query) {
        ids.extend(page?.into_iter().map(|d| d.id));
    }
    let purged = ids.len();
    state
        .writer
        .commit(Change::RemoveDeadLetters {
            org: org.map(str::to_owned),
            ids,
        })
        .await?;
    Ok(axum::Json(PurgeResult { purged }))
}

/// Removes dead letters by id or age, for good.
#[utoipa::path(post, path = "/v1/orgs/{org}/dead-letters/purge", tag = "operations", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization")),
    request_body = PurgeRequest,
    responses((status = 200, body = PurgeResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn purge(
    State(state): State<ApiState>,
    Path(org): Path<String>,
    Json(request): Json<PurgeRequest>,
) -> Result<axum::Json<PurgeResult>> {
    check_org(&org)?;
    purge_in(&state, Some(&org), request).await
}

/// Removes dead letters that belong to no organization, by id or age.
#[utoipa::path(post, path = "/v1/admin/dead-letters/purge", tag = "operations", security(("bearer" = [])),
    request_body = PurgeRequest,
    responses((status = 200, body = PurgeResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn orgless_purge(
    State(state): State<ApiState>,
    Json(request): Json<PurgeRequest>,
) -> Result<axum::Json<PurgeResult>> {
    purge_in(&state, None, request).await
}

/// A page of organization names.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrgList {
    /// Organizations with at least one webhook, in name order.
    pub orgs: Vec<String>,
    /// Pass it as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A page of the organization listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgParams {
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (100).
    pub limit: Option<usize>,
}

/// The organizations that have webhooks: what an operator picks from in the console.
#[utoipa::path(get, path = "/v1/admin/orgs", tag = "operations", security(("bearer" = [])),
    params(OrgParams),
    responses((status = 200, body = OrgList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn orgs(
    State(state): State<ApiState>,
    Query(params): Query<OrgParams>,
) -> Result<axum::Json<OrgList>> {
    let page = state
        .store
        .orgs(params.cursor.as_deref(), page_size(params.limit)?)?;
    Ok(axum::Json(OrgList {
        orgs: page.items,
        next_cursor: page.next_cursor,
    }))
}
