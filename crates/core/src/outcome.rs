//! What one HTTP attempt means for its delivery. One pure function decides, so that the
//! whole retry policy is visible, and tested, in one place.

use std::time::{Duration, SystemTime};

/// A failure before any HTTP status was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No complete response within `delivery.timeout`.
    Timeout,
    /// The TCP connection failed, or the receiver closed it early.
    Connect,
    /// The TLS handshake failed: the receiver's certificate was not trusted, or the
    /// receiver refused the client certificate (or its absence).
    Tls,
    /// The target policy refused the address; retrying cannot help.
    TargetRefused,
    /// Any other transport error.
    Other,
}

/// The decision after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: done.
    Delivered,
    /// Worth another attempt, not before `after` if the receiver said so.
    Retry {
        /// The receiver's `Retry-After`, when it sent a valid one.
        after: Option<Duration>,
    },
    /// Retrying cannot help: dead-letter it.
    Permanent,
    /// 410 Gone: the receiver wants no more; disable the webhook.
    Gone,
}

/// Classifies an attempt from its status and `Retry-After` header, or its failure.
///
/// `retry_client_errors` makes 4xx other than 410 retryable, for Mode-style receivers that
/// answer 4xx while they are briefly misconfigured.
pub fn classify(
    result: Result<(u16, Option<&str>), AttemptFailure>,
    retry_client_errors: bool,
    now: SystemTime,
) -> Outcome {
    let (status, retry_after) = match result {
        Ok(answer) => answer,
        Err(AttemptFailure::TargetRefused) => return Outcome::Permanent,
        Err(
            AttemptFailure::Timeout
            | AttemptFailure::Connect
            | AttemptFailure::Tls
            | AttemptFailure::Other,
        ) => {
            return Outcome::Retry { after: None };
        }
    };
    let retry = || Outcome::Retry {
        after: retry_after.and_then(|v| parse_retry_after(v, now)),
    };
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Gone,
        408 | 429 => retry(),
        501 => Outcome::Permanent,
        500..=599 => retry(),
        400..=499 if retry_client_errors => retry(),
        _ => Outcome::Permanent,
    }
}

/// `Retry-After` is either delay-seconds or an HTTP-date (RFC 9110, section 10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Outcome {
        classify(Ok((code, None)), false, SystemTime::now())
    }

    #[test]
    fn every_status_class() {
        for code in 100..=599u16 {
            let expected = match code {
                200..=299 => Outcome::Delivered,
                410 => Outcome::Gone,
                408 | 429 | 500 | 502..=599 => Outcome::Retry { after: None },
                _ => Outcome::Permanent,
            };
            assert_eq!(status(code), expected, "status {code}");
        }
    }

    #[test]
    fn client_errors_retry_when_configured_but_gone_stays_gone() {
        let now = SystemTime::now();
        assert_eq!(
            classify(Ok((404, None)), true, now),
            Outcome::Retry { after: None }
        );
        assert_eq!(classify(Ok((410, None)), true, now), Outcome::Gone);
        assert_eq!(classify(Ok((301, None)), true, now), Outcome::Permanent);
        assert_eq!(classify(Ok((501, None)), true, now), Outcome::Permanent);
    }

    #[test]
    fn failures_before_a_status() {
        let now = SystemTime::now();
        for f in [
            AttemptFailure::Timeout,
            AttemptFailure::Connect,
            AttemptFailure::Tls,
            AttemptFailure::Other,
        ] {
            assert_eq!(classify(Err(f), false, now), Outcome::Retry { after: None });
        }
        assert_eq!(
            classify(Err(AttemptFailure::TargetRefused), false, now),
            Outcome::Permanent
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let after = |v| classify(Ok((503, Some(v))), false, now);
        assert_eq!(
            after("120"),
            Outcome::Retry {
                after: Some(Duration::from_secs(120))
            }
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            after(&date),
            Outcome::Retry {
                after: Some(Duration::from_secs(90))
            }
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(
            after(&past),
            Outcome::Retry {
                after: Some(Duration::ZERO)
            }
        );
        assert_eq!(after("soon"), Outcome::Retry { after: None });
        assert_eq!(
            classify(Ok((429, Some("7"))), false, now),
            Outcome::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
    }
}
