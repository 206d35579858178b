//! Webhook management, as in Mode's "Organization Settings → Webhooks": a target URL, a
//! description and the events to listen to, saved only after the receiver accepted a
//! signed test event.

use axum::extract::{Path, State};
use axum::http::header::IF_MATCH;
use axum::http::{HeaderMap, StatusCode};
use hookwire_core::event::{is_valid_org, webhook_id};
use hookwire_core::{Catalog, Secret, Subscription, TargetError, now_ms};
use hookwire_store::Change;
use url::Host;
use uuid::Uuid;

use crate::auth::Credential;
use crate::error::ErrorBody;
use crate::extract::{Json, Query};
use crate::{ApiError, ApiState, Result};

mod options;
mod preview;
mod replicated;
mod types;

pub use options::*;
pub use preview::*;
pub use replicated::check_replicated;
pub use types::*;

/// The longest description accepted.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

pub(crate) fn check_org(org: &str) -> Result<()> {
    if is_valid_org(org) {
        Ok(())
    } else {
        Err(ApiError::BadRequest {
            code: "invalid_org",
            message: "an organization is [A-Za-z0-9_-]{1,64}".into(),
        })
    }
}

pub(crate) async fn load(state: &ApiState, org: &str, id: &str) -> Result<Subscription> {
    check_org(org)?;
    let not_found = || ApiError::NotFound(format!("organization `{org}` has no webhook `{id}`"));
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    state.store.get(org, &id)?.ok_or_else(not_found)
}

/// [`load`] for a change or a delivery: a broken webhook (its record cannot be used) can
/// only be read and deleted.
pub(crate) async fn load_sound(state: &ApiState, org: &str, id: &str) -> Result<Subscription> {
    let sub = load(state, org, id).await?;
    match &sub.broken_reason {
        None => Ok(sub),
        Some(reason) => Err(ApiError::Conflict {
            code: "webhook_broken",
            message: format!(
                "this webhook's stored record cannot be used ({reason}); delete it and create it again"
            ),
        }),
    }
}

/// Checks the URL's shape and every address its host resolves to, with the delivery policy.
/// A refusal names the rule (e.g. `private (RFC 1918)`), never a resolved address: that
/// would let a client map internal names. The address goes to the server's log.
async fn check_target(state: &ApiState, url: &str) -> Result<()> {
    let refused = |e: &dyn std::fmt::Display| {
        ApiError::unprocessable("target_refused", format!("target URL refused: {e}"))
    };
    let parsed = state.config.policy.check_url(url).map_err(|e| match e {
        TargetError::RefusedAddress { .. } | TargetError::RefusedHost(_) => refused(&e),
        other => ApiError::unprocessable("invalid_url", other.to_string()),
    })?;
    if let Some(Host::Domain(host)) = parsed.host() {
        let limit = state.deliverer.timeout();
        hookwire_http::resolve_allowed_within(&state.config.policy, host, limit)
            .await
            .map_err(|e| {
                tracing::warn!(host, error = ?e, "Webhook target refused.");
                refused(&e)
            })?;
    }
    Ok(())
}

/// A permit for one test event, or 503 at once when `api.max_test_sends` are in flight:
/// an admin client that floods create or test gets a clear answer, and outbound requests
/// never queue up inside the API.
fn test_send_permit(state: &ApiState) -> Result<tokio::sync::OwnedSemaphorePermit> {
    state
        .test_sends
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable {
            code: "too_many_test_events",
            message: "too many test events are in flight; try again shortly".into(),
        })
}

pub(crate) fn check_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_description",
            format!("a description has at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(())
}

pub(crate) fn check_limits(
    max_concurrency: Option<u32>,
    rate_limit_per_sec: Option<u32>,
) -> Result<()> {
    if max_concurrency.is_some_and(|n| !(1..=1000).contains(&n)) {
        return Err(ApiError::unprocessable(
            "invalid_limits",
            "max_concurrency is 1 to 1000",
        ));
    }
    if rate_limit_per_sec.is_some_and(|n| !(1..=100_000).contains(&n)) {
        return Err(ApiError::unprocessable(
            "invalid_limits",
            "rate_limit_per_sec is 1 to 100000",
        ));
    }
    Ok(())
}

pub(crate) fn check_events(catalog: &Catalog, events: &[String]) -> Result<Vec<String>> {
    let valid = catalog.names_joined();
    if events.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_events",
            format!("subscribe to at least one event type: {valid}"),
        ));
    }
    if let Some(unknown) = events.iter().find(|e| catalog.get(e).is_none()) {
        return Err(ApiError::unprocessable(
            "invalid_events",
            format!("unknown event type `{unknown}`; valid types: {valid}"),
        ));
    }
    let mut events = events.to_vec();
    events.sort();
    events.dedup();
    Ok(events)
}

/// Sends `{"event":"webhook_test","webhook_id":…}`, signed with the webhook's secrets,
/// under a test-send permit. A webhook with a transform is sent what its transform makes
/// of the catalog's example of its first event type instead: a receiver that reads only
/// such bodies (a chat's incoming webhook) would refuse the plain test event.
async fn send_test_event(state: &ApiState, sub: &Subscription) -> Result<TestResult> {
    let _permit = test_send_permit(state)?;
    let body = match test_body(state, sub) {
        Ok(body) => body,
        Err(error) => {
            return Ok(TestResult {
                delivered: false,
                status: None,
                error: Some(error),
                latency_ms: 0,
            });
        }
    };
    let message_id = webhook_id(&format!("webhook_test_{}", now_ms()), &sub.id);
    let report = state.deliverer.attempt(sub, &message_id, &body).await;
    let delivered = report.status.is_some_and(|s| (200..300).contains(&s));
    Ok(TestResult {
        delivered,
        status: report.status,
        error: (!delivered).then(|| report.describe()),
        latency_ms: u64::try_from(report.latency.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The test event's body for `sub`, or why its transform gives none.
fn test_body(state: &ApiState, sub: &Subscription) -> std::result::Result<Vec<u8>, String> {
    let plain = serde_json::json!({ "event": "webhook_test", "webhook_id": sub.id });
    let Some(transform) = &sub.transform else {
        return Ok(plain.to_string().into_bytes());
    };
    let event_type = sub.events.first().map_or("webhook_test", String::as_str);
    let example = example_body(&state.catalog, event_type).unwrap_or(plain);
    let example = example.to_string();
    transform
        .apply(&hookwire_core::FilterInput::new(
            event_type,
            example.as_bytes(),
        ))
        .map_err(|e| {
            format!("the transform gives no body for the catalog's example of `{event_type}`: {e}")
        })
}

async fn require_test_event(state: &ApiState, sub: &Subscription) -> Result<()> {
    let result = send_test_event(state, sub).await?;
    if result.delivered {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "test_event_failed",
        format!(
            "the test event was not accepted: {}; nothing was saved",
            result.error.unwrap_or_default()
        ),
    ))
}

/// Refuses one more webhook to an organization at `api.max_webhooks_per_org`, before its
/// test event is sent (the write checks again).
fn check_webhook_limit(state: &ApiState, org: &str) -> Result<()> {
    let max = state.config.max_webhooks_per_org;
    if state.store.count(org)? >= max {
        return Err(ApiError::Conflict {
            code: "webhook_limit_reached",
            message: format!(
                "organization `{org}` already has the most webhooks allowed ({max}); delete one first"
            ),
        });
    }
    Ok(())
}

/// Refuses the write (409 `conflict`) unless `sub` is at the version the client expects:
/// the body's `version`, or an `If-Match` header (`3`, `"3"` or `W/"3"`), when sent.
fn check_expected_version(
    headers: &HeaderMap,
    body: Option<u64>,
    sub: &Subscription,
) -> Result<()> {
    let header = match headers.get(IF_MATCH) {
        None => None,
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
            Some(text.parse::<u64>().map_err(|_| ApiError::BadRequest {
                code: "invalid_if_match",
                message: "If-Match is the webhook's `version`, e.g. `If-Match: \"3\"`".into(),
            })?)
        }
    };
    for expected in [body, header].into_iter().flatten() {
        if expected != sub.version {
            return Err(ApiError::Conflict {
                code: "conflict",
                message: format!(
                    "webhook {} is at version {}, not {expected}: read it again and retry",
                    sub.id, sub.version
                ),
            });
        }
    }
    Ok(())
}

/// Writes `sub` over the version it was read at, so that a change made meanwhile (a
/// delete, another update, hookwire disabling it) is never undone: that answers 409
/// `conflict` (404 if it was deleted). Returns the webhook as written.
async fn replace(state: &ApiState, mut sub: Subscription) -> Result<Subscription> {
    let expected_version = sub.version;
    state
        .writer
        .commit(Change::Replace {
            sub: sub.clone(),
            expected_version,
        })
        .await?;
    sub.version = expected_version.wrapping_add(1);
    Ok(sub)
}

/// Creates a webhook, after its receiver accepted a signed test event.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), VerifyParam),
    request_body = CreateWebhook,
    responses(
        (status = 201, body = WebhookWithSecret, description = "Created; the secret is shown only now"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Invalid input, refused target, or the receiver did not accept the test event"),
        (status = 403, body = ErrorBody, description = "`verify_required`: only an operator's token may skip the test event"),
        (status = 409, body = ErrorBody, description = "The organization has `api.max_webhooks_per_org` webhooks already (`webhook_limit_reached`)"),
        (status = 503, body = ErrorBody, description = "`too_many_test_events`: api.max_test_sends are in flight"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    Path(org): Path<String>,
    Query(params): Query<VerifyParam>,
    axum::Extension(credential): axum::Extension<Credential>,
    Json(request): Json<CreateWebhook>,
) -> Result<(StatusCode, axum::Json<WebhookWithSecret>)> {
    check_org(&org)?;
    let test_event = params.test_event(&credential)?;
    check_description(&request.description)?;
    check_limits(request.max_concurrency, request.rate_limit_per_sec)?;
    let events = check_events(&state.catalog, &request.events)?;
    let filter = request.filter.as_deref().map(check_filter).transpose()?;
    let transform = request
        .transform
        .as_deref()
        .map(check_transform)
        .transpose()?;
    check_target(&state, &request.url).await?;
    check_webhook_limit(&state, &org)?;
    let secret = Secret::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut sub = Subscription::new(
        &org,
        &request.url,
        &request.description,
        events,
        secret.clone(),
        now_ms(),
    );
    sub.max_concurrency = request.max_concurrency;
    sub.rate_limit_per_sec = request.rate_limit_per_sec;
    sub.filter = filter;
    sub.transform = transform;
    merge_headers(
        &mut sub,
        request
            .headers
            .into_iter()
            .map(|(n, v)| (n, Some(v)))
            .collect(),
        request
            .secret_headers
            .into_iter()
            .map(|(n, v)| (n, Some(v)))
            .collect(),
    )?;
    set_ed25519(&mut sub, request.ed25519)?;
    set_client_tls(
        &mut sub,
        request.client_certificate.map(Some),
        request.client_key,
        request.ca_certificates.map(Some),
    )?;
    if request.retry.is_some() {
        set_retry(
            &mut sub,
            request.retry,
            &state.config.retry_schedule,
            state.config.max_age,
        )?;
    }
    if test_event {
        require_test_event(&state, &sub).await?;
    }
    // Checked again where writes are serialized: others may have been created meanwhile.
    state
        .writer
        .commit(Change::Create {
            sub: sub.clone(),
            max_per_org: state.config.max_webhooks_per_org,
        })
        .await?;
    tracing::info!(webhook_id = %sub.id, org = %sub.org, "Webhook created.");
    Ok((
        StatusCode::CREATED,
        axum::Json(WebhookWithSecret {
            webhook: Webhook::from(&sub).with_circuit(&state),
            secret: secret.to_whsec(),
        }),
    ))
}

/// The organization's webhooks.
#[utoipa::path(get, path = "/v1/orgs/{org}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ListParams),
    responses((status = 200, body = WebhookList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Path(org): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<WebhookList>> {
    check_org(&org)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIST_PAGE);
    if !(1..=MAX_LIST_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: format!("limit is 1 to {MAX_LIST_PAGE}"),
        });
    }
    let page = state
        .store
        .list_page(&org, params.cursor.as_deref(), limit)
        .map_err(|e| match e {
            hookwire_store::Error::InvalidCursor(_) => ApiError::BadRequest {
                code: "invalid_cursor",
                message: e.to_string(),
            },
            other => other.into(),
        })?;
    Ok(axum::Json(WebhookList {
        webhooks: page
            .items
            .iter()
            .map(|s| Webhook::from(s).with_circuit(&state))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One webhook.
#[utoipa::path(get, path = "/v1/orgs/{org}/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id")),
    responses((status = 200, body = Webhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
) -> Result<axum::Json<Webhook>> {
    let webhook = Webhook::from(&load(&state, &org, &id).await?);
    Ok(axum::Json(webhook.with_circuit(&state)))
}

/// Changes a webhook. A new URL must accept the test event first.
#[utoipa::path(patch, path = "/v1/orgs/{org}/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id"), VerifyParam,
        ("If-Match" = Option<String>, Header, description = "The webhook's `version` you read: refused with 409 `conflict` if it changed since")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, body = Webhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`verify_required`: only an operator's token may skip the test event"),
        (status = 409, body = ErrorBody, description = "It changed while this request was in progress, or since the `version` sent (`conflict`), or it is broken (`webhook_broken`); nothing was saved"),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "`too_many_test_events`: api.max_test_sends are in flight"),
    ))]
pub async fn update(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
    Query(params): Query<VerifyParam>,
    axum::Extension(credential): axum::Extension<Credential>,
    headers: HeaderMap,
    Json(request): Json<UpdateWebhook>,
) -> Result<axum::Json<Webhook>> {
    let test_event = params.test_event(&credential)?;
    let mut sub = load_sound(&state, &org, &id).await?;
    check_expected_version(&headers, request.version, &sub)?;
    if let Some(description) = request.description {
        check_description(&description)?;
        sub.description = description;
    }
    if let Some(events) = request.events {
        sub.events = check_events(&state.catalog, &events)?;
    }
    check_limits(request.max_concurrency, request.rate_limit_per_sec)?;
    if let Some(filter) = request.filter {
        sub.filter = filter.as_deref().map(check_filter).transpose()?;
    }
    if let Some(transform) = request.transform {
        sub.transform = transform.as_deref().map(check_transform).transpose()?;
    }
    // Secret header values this request sets: the only ones a new URL receives.
    let resupplied: Vec<String> = request
        .secret_headers
        .iter()
        .flatten()
        .filter(|(_, value)| value.is_some())
        .filter_map(|(name, _)| hookwire_core::custom_headers::check_name(name).ok())
        .collect();
    if request.headers.is_some() || request.secret_headers.is_some() {
        merge_headers(
            &mut sub,
            request.headers.unwrap_or_default(),
            request.secret_headers.unwrap_or_default(),
        )?;
    }
    if let Some(on) = request.ed25519 {
        set_ed25519(&mut sub, on)?;
    }
    let resupplied_certificate = matches!(request.client_certificate, Some(Some(_)));
    set_client_tls(
        &mut sub,
        request.client_certificate,
        request.client_key,
        request.ca_certificates,
    )?;
    if let Some(retry) = request.retry {
        set_retry(
            &mut sub,
            retry,
            &state.config.retry_schedule,
            state.config.max_age,
        )?;
    }
    sub.max_concurrency = request.max_concurrency.or(sub.max_concurrency);
    sub.rate_limit_per_sec = request.rate_limit_per_sec.or(sub.rate_limit_per_sec);
    if let Some(enabled) = request.enabled {
        sub.enabled = enabled;
        if enabled {
            sub.disabled_reason = None;
        }
    }
    if let Some(url) = request.url.filter(|url| *url != sub.url) {
        check_target(&state, &url).await?;
        sub.url = url;
        // A secret header was given for the old receiver: re-pointing the webhook must not
        // hand it to the new one unless this same request supplies it again.
        sub.headers
            .retain(|h| !h.secret || resupplied.contains(&h.name));
        // Likewise the client certificate: it may open doors at the old receiver's
        // organization that the new URL must not walk through.
        if !resupplied_certificate {
            sub.client_tls.identity = None;
        }
        if test_event {
            require_test_event(&state, &sub).await?;
        }
    }
    sub.updated_at_ms = now_ms();
    let sub = replace(&state, sub).await?;
    Ok(axum::Json(Webhook::from(&sub).with_circuit(&state)))
}

/// Deletes a webhook. Its pending retries are dropped when they come due.
#[utoipa::path(delete, path = "/v1/orgs/{org}/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let sub = load(&state, &org, &id).await?;
    state
        .writer
        .commit(Change::Delete {
            org: sub.org,
            id: sub.id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a test event now and reports the receiver's answer.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks/{id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id")),
    responses((status = 200, body = TestResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "`too_many_test_events`: api.max_test_sends are in flight")))]
pub async fn test(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
) -> Result<axum::Json<TestResult>> {
    let sub = load_sound(&state, &org, &id).await?;
    Ok(axum::Json(send_test_event(&state, &sub).await?))
}

/// Issues a new secret. The previous one keeps signing for `secrets.rotation_grace`,
/// so every delivery in between carries both signatures.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id"),
        ("If-Match" = Option<String>, Header, description = "The webhook's `version` you read: refused with 409 `conflict` if it changed since")),
    responses((status = 200, body = RotatedSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "It changed while the secret was being rotated (`conflict`); no secret was issued")))]
pub async fn rotate_secret(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<RotatedSecret>> {
    let mut sub = load_sound(&state, &org, &id).await?;
    check_expected_version(&headers, None, &sub)?;
    let now = now_ms();
    let grace_ms = u64::try_from(state.config.rotation_grace.as_millis()).unwrap_or(u64::MAX);
    let previous_valid_until = now.saturating_add(grace_ms);
    let secret = Secret::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    // The current key signs through the grace period, older ones until their own end, and
    // at most `MAX_SIGNING_KEYS` sign at once.
    sub.rotate(secret.clone(), now, previous_valid_until);
    sub.updated_at_ms = now;
    // Over the version read: a concurrent change fails this rotation (409) rather than
    // being undone, and a secret shown to the user is always the stored one.
    replace(&state, sub).await?;
    Ok(axum::Json(RotatedSecret {
        secret: secret.to_whsec(),
        previous_valid_until: rfc3339(previous_valid_until),
    }))
}
