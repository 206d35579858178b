//! What a webhook adds to its deliveries: custom headers, Ed25519 signatures, a payload
//! filter and transform, its TLS settings and its retry policy, checked here before
//! anything is saved.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use hookwire_core::client_tls::{ClientIdentity, ClientKey};
use hookwire_core::custom_headers::{check_name, check_set, check_value};
use hookwire_core::{
    CustomHeader, Ed25519Key, Filter, RetryPolicy, RetrySchedule, Subscription, Transform, now_ms,
};
use hookwire_http::client_tls::{check_ca_bundle, check_identity};

use super::{
    PrivateKeyPem, RetryPolicyRequest, RotatedEd25519Key, check_expected_version, load_sound,
    replace, rfc3339,
};
use crate::error::ErrorBody;
use crate::{ApiError, ApiState, Result};

fn invalid_headers(message: String) -> ApiError {
    ApiError::unprocessable("invalid_headers", message)
}

/// Parses a filter, or answers 400 `invalid_filter` with where and what is wrong.
pub(super) fn check_filter(source: &str) -> Result<Filter> {
    Filter::parse(source).map_err(|e| ApiError::BadRequest {
        code: "invalid_filter",
        message: match (e.line, e.column) {
            (Some(line), Some(column)) => {
                format!(
                    "invalid filter at line {line}, column {column}: {}",
                    e.message
                )
            }
            _ => format!("invalid filter: {}", e.message),
        },
    })
}

/// Parses a transform, or answers 422 `invalid_transform` with where and what is wrong.
pub(crate) fn check_transform(source: &str) -> Result<Transform> {
    Transform::parse(source).map_err(|e| {
        ApiError::unprocessable(
            "invalid_transform",
            match (e.line, e.column) {
                (Some(line), Some(column)) => format!(
                    "invalid transform at line {line}, column {column}: {}",
                    e.message
                ),
                _ => format!("invalid transform: {}", e.message),
            },
        )
    })
}

/// Sets (a value) or removes (`None`) headers of `sub`, plain and secret; a name given
/// twice in one request, or refused by the rules, answers 422 `invalid_headers`.
pub(super) fn merge_headers(
    sub: &mut Subscription,
    plain: BTreeMap<String, Option<String>>,
    secret: BTreeMap<String, Option<String>>,
) -> Result<()> {
    let mut seen = Vec::new();
    let changes = plain
        .into_iter()
        .map(|(n, v)| (n, v, false))
        .chain(secret.into_iter().map(|(n, v)| (n, v, true)));
    for (name, value, is_secret) in changes {
        let name = check_name(&name).map_err(invalid_headers)?;
        if seen.contains(&name) {
            return Err(invalid_headers(format!("header `{name}` is given twice")));
        }
        seen.push(name.clone());
        sub.headers.retain(|h| h.name != name);
        if let Some(value) = value {
            check_value(&name, &value).map_err(invalid_headers)?;
            sub.headers.push(CustomHeader {
                name,
                value,
                secret: is_secret,
            });
        }
    }
    sub.headers.sort_by(|a, b| a.name.cmp(&b.name));
    check_set(&sub.headers).map_err(invalid_headers)
}

/// Sets (a PEM), keeps (absent) or removes (null) the webhook's client certificate and
/// CA bundle. A certificate comes with its key, checked to match it; each refusal is
/// 422 `invalid_client_certificate` or `invalid_ca_certificates`.
pub(super) fn set_client_tls(
    sub: &mut Subscription,
    certificate: Option<Option<String>>,
    key: Option<PrivateKeyPem>,
    ca: Option<Option<String>>,
) -> Result<()> {
    let invalid = |message: String| ApiError::unprocessable("invalid_client_certificate", message);
    match (certificate, key) {
        (Some(Some(cert_pem)), Some(PrivateKeyPem(key_pem))) => {
            check_identity(&cert_pem, &key_pem, now_ms()).map_err(invalid)?;
            sub.client_tls.identity = Some(ClientIdentity {
                cert_pem,
                key: Some(ClientKey::new(key_pem)),
            });
        }
        (Some(Some(_)), None) => {
            return Err(invalid(
                "client_certificate needs its client_key in the same request".into(),
            ));
        }
        (None | Some(None), Some(_)) => {
            return Err(invalid("client_key needs its client_certificate".into()));
        }
        (Some(None), None) => sub.client_tls.identity = None,
        (None, None) => {}
    }
    match ca {
        Some(Some(pem)) => {
            check_ca_bundle(&pem)
                .map_err(|m| ApiError::unprocessable("invalid_ca_certificates", m))?;
            sub.client_tls.ca_pem = Some(pem);
        }
        Some(None) => sub.client_tls.ca_pem = None,
        None => {}
    }
    Ok(())
}

/// Applies a request's retry policy to `sub`: absent parts stay, null ones are removed.
/// The result is checked against the operator's tiers and `delivery.max_age`; a refusal
/// is 422 `invalid_retry_policy`.
pub(super) fn set_retry(
    sub: &mut Subscription,
    change: Option<RetryPolicyRequest>,
    configured: &RetrySchedule,
    max_age: Duration,
) -> Result<()> {
    let invalid = |message: String| ApiError::unprocessable("invalid_retry_policy", message);
    let parse = |field: &str, text: &str| {
        humantime::parse_duration(text).map_err(|_| {
            invalid(format!(
                "{field}: `{text}` is not a duration (e.g. `30s`, `5m`, `1h`)"
            ))
        })
    };
    let Some(change) = change else {
        sub.retry = RetryPolicy::default();
        return Ok(());
    };
    let mut policy = sub.retry.clone();
    match change.schedule {
        Some(Some(delays)) => {
            policy.schedule = Some(
                delays
                    .iter()
                    .map(|d| parse("retry.schedule", d))
                    .collect::<Result<_>>()?,
            );
        }
        Some(None) => policy.schedule = None,
        None => {}
    }
    match change.max_age {
        Some(Some(age)) => policy.max_age = Some(parse("retry.max_age", &age)?),
        Some(None) => policy.max_age = None,
        None => {}
    }
    policy.check(configured, max_age).map_err(invalid)?;
    sub.retry = policy;
    Ok(())
}

/// Turns Ed25519 signing on (a new key, unless one signs already) or off.
pub(super) fn set_ed25519(sub: &mut Subscription, on: bool) -> Result<()> {
    if !on {
        sub.ed25519_keys.clear();
    } else if sub.ed25519_keys.is_empty() {
        let key = Ed25519Key::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
        sub.rotate_ed25519(key, now_ms(), now_ms());
    }
    Ok(())
}

/// Issues a new Ed25519 key. The previous one keeps signing for `secrets.rotation_grace`,
/// so every delivery in between carries both `v1a` signatures.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks/{id}/rotate-ed25519-key", tag = "webhooks", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization"), ("id" = String, Path, description = "The webhook id"),
        ("If-Match" = Option<String>, Header, description = "The webhook's `version` you read: refused with 409 `conflict` if it changed since")),
    responses((status = 200, body = RotatedEd25519Key), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "It changed while the key was being rotated (`conflict`); no key was issued"),
        (status = 422, body = ErrorBody, description = "Ed25519 signing is off for this webhook (`ed25519_off`)")))]
pub async fn rotate_ed25519_key(
    State(state): State<ApiState>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<RotatedEd25519Key>> {
    let mut sub = load_sound(&state, &org, &id).await?;
    check_expected_version(&headers, None, &sub)?;
    if sub.ed25519_keys.is_empty() {
        return Err(ApiError::unprocessable(
            "ed25519_off",
            "Ed25519 signing is off for this webhook: turn it on with `\"ed25519\": true`",
        ));
    }
    let now = now_ms();
    let grace_ms = u64::try_from(state.config.rotation_grace.as_millis()).unwrap_or(u64::MAX);
    let previous_valid_until = now.saturating_add(grace_ms);
    let key = Ed25519Key::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let public_key = key.public_key().to_string();
    sub.rotate_ed25519(key, now, previous_valid_until);
    sub.updated_at_ms = now;
    replace(&state, sub).await?;
    Ok(axum::Json(RotatedEd25519Key {
        public_key,
        previous_valid_until: rfc3339(previous_valid_until),
    }))
}
