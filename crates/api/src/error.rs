//! The one place errors become HTTP: `{"error":{"code","message"}}`. 5xx is reserved for
//! real server faults, and those are logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An API failure, with the status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or a wrong bearer token.
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    /// An access token past its expiry.
    #[error("this access token has expired: ask for a new one")]
    TokenExpired,
    /// A valid token that does not reach this route: `code` says why.
    #[error("{message}")]
    Forbidden {
        /// Machine-readable code.
        code: &'static str,
        /// What is refused.
        message: String,
    },
    /// No such route, organization or webhook.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// Malformed input: `code` names the problem.
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Well-formed input that breaks a rule.
    #[error("{message}")]
    Unprocessable {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The request conflicts with the resource's current state: it changed meanwhile, or
    /// a limit is reached.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The body is over `api.max_body_bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request was not answered within `api.request_timeout`.
    #[error("the request was not answered within {0:?}")]
    RequestTimeout(std::time::Duration),
    /// A limit is reached; trying again later can succeed.
    #[error("{message}")]
    Unavailable {
        /// Machine-readable code.
        code: &'static str,
        /// What is busy.
        message: String,
    },
    /// A rate limit is reached: try again after `retry_after` (sent as `Retry-After`).
    #[error("{message}")]
    TooManyRequests {
        /// Machine-readable code.
        code: &'static str,
        /// Which limit.
        message: String,
        /// When trying again can succeed.
        retry_after: std::time::Duration,
    },
    /// A server fault. The detail is logged with an id; the client sees only the id, since
    /// store and I/O errors name paths and internals.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The result type of handlers.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, e.g. `test_event_failed`.
    pub code: String,
    /// Human-readable.
    pub message: String,
}

impl ApiError {
    /// 422 with a code.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            Self::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            Self::TooManyRequests { code, .. } => (StatusCode::TOO_MANY_REQUESTS, code),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<hookwire_store::Error> for ApiError {
    fn from(e: hookwire_store::Error) -> Self {
        match e {
            hookwire_store::Error::NotFound(id) => Self::NotFound(format!("no webhook {id}")),
            e @ hookwire_store::Error::LimitReached { .. } => Self::Conflict {
                code: "webhook_limit_reached",
                message: format!("{e}; delete one first"),
            },
            hookwire_store::Error::Conflict { id, .. } => Self::Conflict {
                code: "conflict",
                message: format!(
                    "webhook {id} changed while this request was in progress; nothing was saved: read it again and retry"
                ),
            },
            hookwire_store::Error::Replication(message) => Self::Unavailable {
                code: "replication_unavailable",
                message: format!(
                    "{message}; the write may still take effect: read the webhook again before retrying"
                ),
            },
            // Only when this node's configuration refuses what the writing node's accepted.
            hookwire_store::Error::Refused(message) => {
                Self::unprocessable("refused_on_apply", message)
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if let Self::Internal(detail) = &self {
            let error_id = uuid::Uuid::now_v7();
            tracing::error!(%error_id, error = %detail, "API request failed.");
            format!("internal error {error_id}; the server log has the detail")
        } else {
            if status.is_server_error() {
                tracing::warn!(error = %self, "API request refused.");
            }
            self.to_string()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let challenge = match self {
            Self::Unauthorized => Some("Bearer"),
            Self::TokenExpired => Some("Bearer error=\"invalid_token\""),
            _ => None,
        };
        if let Self::TooManyRequests { retry_after, .. } = self {
            // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.max(1).into());
        }
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The fallback for unknown routes.
pub async fn not_found() -> ApiError {
    no_such_route()
}

/// The answer to a route that does not exist, and to another organization's routes for a
/// token limited to organizations: the two cannot be told apart.
pub(crate) fn no_such_route() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// The fallback for known routes with an unknown method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_the_changes_stream_did_not_take_answers_503() {
        let error = hookwire_store::Error::Replication("the broker is unreachable".into());
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "replication_unavailable");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains("read the webhook again"), "{message}");
    }

    #[tokio::test]
    async fn an_internal_error_shows_an_id_and_no_detail() {
        let detail = "sled: I/O error at /var/lib/hookwire/db/conf: permission denied";
        let response = ApiError::Internal(detail.into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "internal");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            !message.contains("sled") && !message.contains("/var/lib"),
            "{message}"
        );
        let id = message
            .split_whitespace()
            .nth(2)
            .and_then(|w| w.trim_end_matches(';').parse::<uuid::Uuid>().ok());
        assert!(id.is_some(), "an id to find the log line by: {message}");
    }
}
