//! Standard Webhooks signing: `whsec_` secrets and `v1,<base64 HMAC-SHA256>` signatures
//! over `"{webhook-id}.{webhook-timestamp}.{body}"`.
//!
//! Spec: <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use sha2::Sha256;

use crate::{Error, Result};

pub mod ed25519;

pub use ed25519::{Ed25519Key, PublicKey};

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";
/// The spec allows 24 to 64 bytes of key; hookwire generates 32.
const MIN_KEY_LEN: usize = 24;
const MAX_KEY_LEN: usize = 64;
const GENERATED_KEY_LEN: usize = 32;

/// A signing secret. Its `Debug` output is redacted so that it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A fresh secret of 32 bytes from the operating system's RNG.
    pub fn generate() -> Result<Self> {
        let mut key = vec![0; GENERATED_KEY_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| Error::Secret(format!("the OS RNG failed: {e}")))?;
        Ok(Self(key))
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| Error::Secret(format!("a secret starts with `{PREFIX}`")))?;
        let key = BASE64
            .decode(encoded)
            .map_err(|e| Error::Secret(format!("not base64: {e}")))?;
        Self::from_bytes(key)
    }

    /// Wraps raw key bytes, as stored.
    pub fn from_bytes(key: Vec<u8>) -> Result<Self> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(Error::Secret(format!(
                "a key has {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes, not {}",
                key.len()
            )));
        }
        Ok(Self(key))
    }

    /// The raw key bytes, for encryption at rest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `whsec_…` form given to the webhook's owner.
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", BASE64.encode(&self.0))
    }

    /// The `v1,<base64>` signature of one attempt.
    pub fn sign(&self, webhook_id: &str, timestamp_secs: u64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            BASE64.encode(
                self.mac(webhook_id, timestamp_secs, body)
                    .finalize()
                    .into_bytes()
            )
        )
    }

    fn mac(&self, webhook_id: &str, timestamp_secs: u64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// Checks a `webhook-signature` header the way a receiver does: any one of its
    /// space-separated `v1,` signatures must match, compared in constant time.
    pub fn verify(
        &self,
        webhook_id: &str,
        timestamp_secs: u64,
        body: &[u8],
        header: &str,
    ) -> Result<()> {
        let matches = header
            .split(' ')
            .filter_map(|sig| sig.strip_prefix("v1,"))
            .filter_map(|b64| BASE64.decode(b64).ok())
            .any(|sig| {
                self.mac(webhook_id, timestamp_secs, body)
                    .verify_slice(&sig)
                    .is_ok()
            });
        if matches {
            Ok(())
        } else {
            Err(Error::Signature(
                "no v1 signature matches this secret".into(),
            ))
        }
    }
}

/// The `webhook-signature` header: one signature per secret, space-separated, as
/// Standard Webhooks specifies for secret rotation.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    webhook_id: &str,
    timestamp_secs: u64,
    body: &[u8],
) -> String {
    signature_header_with(secrets, [], webhook_id, timestamp_secs, body)
}

/// The `webhook-signature` header with `v1` signatures by `secrets` followed by `v1a`
/// signatures by `ed25519_keys`, space-separated: a receiver checks the kind it holds a
/// key for and ignores the other.
pub fn signature_header_with<'a, 'b>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    ed25519_keys: impl IntoIterator<Item = &'b Ed25519Key>,
    webhook_id: &str,
    timestamp_secs: u64,
    body: &[u8],
) -> String {
    let mut header = String::with_capacity(128);
    let signatures = secrets
        .into_iter()
        .map(|s| s.sign(webhook_id, timestamp_secs, body))
        .chain(
            ed25519_keys
                .into_iter()
                .map(|k| k.sign(webhook_id, timestamp_secs, body)),
        );
    for signature in signatures {
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str(&signature);
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks reference libraries.
    #[test]
    fn standard_webhooks_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
        let body = br#"{"test": 2432232314}"#;
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        secret
            .verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body, &sig)
            .expect("verifies");
    }

    #[test]
    fn generated_secret_round_trips_and_is_redacted() {
        let secret = Secret::generate().expect("rng");
        let text = secret.to_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text).expect("parses"), secret);
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn rotation_header_verifies_with_either_secret_only() {
        let (old, new, other) = (
            Secret::generate().expect("rng"),
            Secret::generate().expect("rng"),
            Secret::generate().expect("rng"),
        );
        let header = signature_header([&new, &old], "msg_1", 10, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        old.verify("msg_1", 10, b"{}", &header)
            .expect("old verifies");
        new.verify("msg_1", 10, b"{}", &header)
            .expect("new verifies");
        assert!(other.verify("msg_1", 10, b"{}", &header).is_err());
        assert!(new.verify("msg_1", 11, b"{}", &header).is_err());
        assert!(new.verify("msg_2", 10, b"{}", &header).is_err());
        assert!(new.verify("msg_1", 10, b"{ }", &header).is_err());
    }

    #[test]
    fn rejects_malformed_secrets() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_!!!").is_err());
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err());
    }
}
