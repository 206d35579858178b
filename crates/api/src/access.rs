//! Access tokens: short-lived bearer tokens for one organization that an operator mints,
//! e.g. to embed the console in a product's own settings page.
//!
//! A token is `hwa_<claims>.<mac>`: the claims as base64url JSON, and HMAC-SHA256 of
//! `hwa_<claims>` under the access-token key derived from `secrets.key` (HKDF, a label of
//! its own: `hookwire_core::keys`). Any node with the same
//! configuration verifies it without a store lookup; the price is that one token cannot
//! be revoked before it expires (`api.access_token_max_ttl` bounds that), only all at once
//! by a new `secrets.key`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use hookwire_core::now_ms;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ErrorBody;
use crate::extract::Json;
use crate::webhooks::{check_org, rfc3339};
use crate::{ApiError, ApiState, Result};

type HmacSha256 = Hmac<Sha256>;

/// How every access token begins, so the API tells it from a configured token at a glance.
pub const PREFIX: &str = "hwa_";

/// The lifetime of a token minted without `ttl`, unless `api.access_token_max_ttl` is
/// shorter.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The format version in the claims.
const VERSION: u8 = 1;

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The format version.
    pub v: u8,
    /// The one organization it may see and change.
    pub org: String,
    /// Only reads when true.
    pub ro: bool,
    /// Issued at, ms since the epoch.
    pub iat: u64,
    /// Expires at, ms since the epoch.
    pub exp: u64,
    /// Its id, for the log.
    pub jti: Uuid,
}

impl Claims {
    /// A token for `org`, issued now, valid for `ttl`.
    pub fn new(org: &str, read_only: bool, ttl: Duration) -> Self {
        let iat = now_ms();
        Self {
            v: VERSION,
            org: org.to_owned(),
            ro: read_only,
            iat,
            exp: iat.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            jti: Uuid::now_v7(),
        }
    }
}

/// Why a presented access token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not an access token this server signed: mangled, tampered with, or signed under
    /// another `secrets.key`.
    Invalid,
    /// Signed here, but past its expiry.
    Expired,
}

/// The keys that sign and verify access tokens. `Debug` hides them.
#[derive(Clone)]
pub struct AccessTokenKeys {
    /// Signs; verifies first.
    signing: [u8; 32],
    /// A token whose lifetime (`exp − iat`) is longer is refused, so that lowering
    /// `api.access_token_max_ttl` also shortens the tokens already minted.
    max_ttl_ms: u64,
    /// Derived from `secrets.previous_keys`: tokens minted before a key rotation stay
    /// valid until they expire.
    previous: Vec<[u8; 32]>,
}

impl std::fmt::Debug for AccessTokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenKeys")
            .field("previous", &self.previous.len())
            .finish_non_exhaustive()
    }
}

impl AccessTokenKeys {
    /// The keys derived from `secrets.key` and `secrets.previous_keys` for `namespace`:
    /// a token minted for one namespace is refused by another that shares the key. Tokens
    /// live at most `max_ttl`.
    pub fn derive(
        secrets_key: &[u8; 32],
        previous: &[[u8; 32]],
        namespace: &str,
        max_ttl: Duration,
    ) -> Self {
        Self {
            signing: derive(secrets_key, namespace),
            max_ttl_ms: u64::try_from(max_ttl.as_millis()).unwrap_or(u64::MAX),
            previous: previous.iter().map(|k| derive(k, namespace)).collect(),
        }
    }

    /// The token carrying `claims`.
    pub fn mint(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let mac = URL_SAFE_NO_PAD.encode(mac(&self.signing, &signed).finalize().into_bytes());
        format!("{signed}.{mac}")
    }

    /// The claims of `token` if this server signed it and it has not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Claims, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let claims_b64 = signed.strip_prefix(PREFIX).ok_or(TokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Invalid)?;
        // `verify_slice` compares in constant time.
        let signed_here = std::iter::once(&self.signing)
            .chain(&self.previous)
            .any(|key| mac(key, signed).verify_slice(&tag).is_ok());
        if !signed_here {
            return Err(TokenError::Invalid);
        }
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
        if claims.v != VERSION || claims.exp.saturating_sub(claims.iat) > self.max_ttl_ms {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The access-token MAC key of one `secrets.key` and namespace: the key HKDF derives for
/// access tokens (`hookwire_core::keys`), bound to the namespace so that a token works
/// only where it was minted.
fn derive(secrets_key: &[u8; 32], namespace: &str) -> [u8; 32] {
    let key = hookwire_core::keys::derive(secrets_key, hookwire_core::keys::KeyUse::AccessTokenMac);
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts any key length");
    mac.update(namespace.as_bytes());
    mac.finalize().into_bytes().into()
}

fn mac(key: &[u8; 32], signed: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(signed.as_bytes());
    mac
}

/// What to mint.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintAccessToken {
    /// Its lifetime, e.g. `15m`, `8h`: from 1m to `api.access_token_max_ttl`. One hour
    /// (or the maximum, if shorter) when absent.
    pub ttl: Option<String>,
    /// Only reads (`GET`) when true.
    #[serde(default)]
    pub read_only: bool,
}

/// A minted access token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessToken {
    /// The bearer token. hookwire keeps no copy: it is shown only now.
    pub token: String,
    /// The organization it is limited to.
    pub org: String,
    /// Only reads when true.
    pub read_only: bool,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
    /// The console signed in with this token: append it to the API's base URL. The token
    /// rides in the fragment, which browsers never send to a server.
    pub console_path: String,
}

fn parse_ttl(text: Option<&str>, max: Duration) -> Result<Duration> {
    let Some(text) = text else {
        return Ok(DEFAULT_TTL.min(max));
    };
    let invalid = |why: String| ApiError::unprocessable("invalid_ttl", why);
    let ttl = humantime::parse_duration(text)
        .map_err(|e| invalid(format!("`ttl` is a duration like `15m` or `8h`: {e}")))?;
    let min = hookwire_core::config::MIN_ACCESS_TOKEN_TTL;
    if ttl < min || ttl > max {
        return Err(invalid(format!(
            "`ttl` is from {} to {} (api.access_token_max_ttl)",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(ttl)
}

/// Mints an access token for one organization. Operators only.
#[utoipa::path(post, path = "/v1/orgs/{org}/access-tokens", tag = "access", security(("bearer" = [])),
    params(("org" = String, Path, description = "The organization")),
    request_body = MintAccessToken,
    responses(
        (status = 201, body = AccessToken, description = "Minted; the token is shown only now"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Not an operator's token (`forbidden`)"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`invalid_ttl`, or a body of the wrong shape"),
    ))]
pub async fn mint(
    State(state): State<ApiState>,
    Path(org): Path<String>,
    Json(request): Json<MintAccessToken>,
) -> Result<(StatusCode, axum::Json<AccessToken>)> {
    check_org(&org)?;
    let ttl = parse_ttl(request.ttl.as_deref(), state.config.access_token_max_ttl)?;
    let claims = Claims::new(&org, request.read_only, ttl);
    let token = state.config.access_keys.mint(&claims);
    tracing::info!(%org, token_id = %claims.jti, read_only = claims.ro, expires_at = %rfc3339(claims.exp), "Access token minted.");
    Ok((
        StatusCode::CREATED,
        axum::Json(AccessToken {
            console_path: format!("/console/#token={token}"),
            token,
            org,
            read_only: claims.ro,
            expires_at: rfc3339(claims.exp),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_TTL: Duration = Duration::from_secs(3600);

    fn keys() -> AccessTokenKeys {
        AccessTokenKeys::derive(&[7; 32], &[], "hookwire", MAX_TTL)
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let claims = Claims::new("acme", true, Duration::from_secs(60));
        let token = keys().mint(&claims);
        assert!(token.starts_with(PREFIX), "{token}");
        assert_eq!(keys().verify(&token, claims.iat), Ok(claims.clone()));
        assert_eq!(
            keys().verify(&token, claims.exp - 1),
            Ok(claims.clone()),
            "valid to the last millisecond"
        );
        assert_eq!(keys().verify(&token, claims.exp), Err(TokenError::Expired));
    }

    #[test]
    fn a_changed_token_or_another_key_is_refused() {
        let claims = Claims::new("acme", false, Duration::from_secs(60));
        let token = keys().mint(&claims);
        let (signed, tag) = token.rsplit_once('.').expect("two parts");
        // Another organization in the claims, under the original tag.
        let mut other = claims.clone();
        other.org = "globex".into();
        let forged = format!(
            "{PREFIX}{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).expect("json"))
        );
        let mut flipped_tag = tag.to_owned().into_bytes();
        flipped_tag[0] = if flipped_tag[0] == b'A' { b'B' } else { b'A' };
        let flipped_tag = format!(
            "{signed}.{}",
            String::from_utf8(flipped_tag).expect("ascii")
        );
        for bad in [
            forged.as_str(),
            flipped_tag.as_str(),
            signed,
            "",
            "hwa_",
            "hwa_.",
            &token[1..],
            &format!("{token}x"),
        ] {
            assert_eq!(
                keys().verify(bad, claims.iat),
                Err(TokenError::Invalid),
                "{bad}"
            );
        }
        let elsewhere = AccessTokenKeys::derive(&[8; 32], &[], "hookwire", MAX_TTL);
        assert_eq!(
            elsewhere.verify(&token, claims.iat),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tokens_minted_before_a_key_rotation_stay_valid() {
        let claims = Claims::new("acme", false, Duration::from_secs(60));
        let token = keys().mint(&claims);
        let rotated = AccessTokenKeys::derive(&[8; 32], &[[7; 32]], "hookwire", MAX_TTL);
        assert_eq!(rotated.verify(&token, claims.iat), Ok(claims));
    }

    #[test]
    fn a_token_of_another_namespace_is_refused() {
        let claims = Claims::new("acme", false, Duration::from_secs(60));
        let token = keys().mint(&claims);
        let staging = AccessTokenKeys::derive(&[7; 32], &[], "hookwire-staging", MAX_TTL);
        assert_eq!(staging.verify(&token, claims.iat), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_longer_lived_than_the_maximum_is_refused() {
        let claims = Claims::new("acme", false, MAX_TTL + Duration::from_millis(1));
        let token = keys().mint(&claims);
        assert_eq!(keys().verify(&token, claims.iat), Err(TokenError::Invalid));
        let longer = AccessTokenKeys::derive(&[7; 32], &[], "hookwire", 2 * MAX_TTL);
        assert_eq!(
            longer.verify(&token, claims.iat),
            Ok(claims),
            "within a longer maximum it is valid"
        );
    }

    #[test]
    fn the_ttl_is_bounded() {
        let max = Duration::from_secs(86_400);
        assert_eq!(parse_ttl(None, max).ok(), Some(DEFAULT_TTL));
        assert_eq!(
            parse_ttl(None, Duration::from_secs(600)).ok(),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_ttl(Some("15m"), max).ok(),
            Some(Duration::from_secs(900))
        );
        for bad in ["59s", "2days", "soon", ""] {
            assert!(
                matches!(
                    parse_ttl(Some(bad), max),
                    Err(ApiError::Unprocessable {
                        code: "invalid_ttl",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
