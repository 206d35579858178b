//! Standard Webhooks' asymmetric signatures: `v1a,<base64 Ed25519 signature>` over the
//! same `"{webhook-id}.{webhook-timestamp}.{body}"` as `v1`, verified by receivers with a
//! `whpk_<base64>` public key, so that no receiver holds a key that could forge a delivery.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer};
use rand::TryRngCore;

use crate::{Error, Result};

const PUBLIC_PREFIX: &str = "whpk_";
const VERSION: &str = "v1a";

/// An Ed25519 private key. Its `Debug` output is redacted so that it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Ed25519Key(ed25519_dalek::SigningKey);

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Key(<redacted>, public {})", self.public_key())
    }
}

impl Ed25519Key {
    /// A fresh key from the operating system's RNG.
    pub fn generate() -> Result<Self> {
        let mut seed = [0; ed25519_dalek::SECRET_KEY_LENGTH];
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| Error::Secret(format!("the OS RNG failed: {e}")))?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The key from its 32-byte seed, as stored.
    pub fn from_bytes(seed: &[u8]) -> Result<Self> {
        let seed: &[u8; ed25519_dalek::SECRET_KEY_LENGTH] = seed.try_into().map_err(|_| {
            Error::Secret(format!(
                "an Ed25519 key has {} bytes, not {}",
                ed25519_dalek::SECRET_KEY_LENGTH,
                seed.len()
            ))
        })?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(seed)))
    }

    /// The 32-byte seed, for encryption at rest.
    pub fn as_bytes(&self) -> &[u8; ed25519_dalek::SECRET_KEY_LENGTH] {
        self.0.as_bytes()
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The `v1a,<base64>` signature of one attempt.
    pub fn sign(&self, webhook_id: &str, timestamp_secs: u64, body: &[u8]) -> String {
        let signature = self
            .0
            .sign(&signed_content(webhook_id, timestamp_secs, body));
        format!("{VERSION},{}", BASE64.encode(signature.to_bytes()))
    }
}

/// An Ed25519 public key, shown to receivers as `whpk_<base64>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", BASE64.encode(self.0.as_bytes()))
    }
}

impl PublicKey {
    /// Parses `whpk_<base64 of 32 bytes>`.
    pub fn parse(text: &str) -> Result<Self> {
        let encoded = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| Error::Secret(format!("a public key starts with `{PUBLIC_PREFIX}`")))?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|e| Error::Secret(format!("not base64: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: &[u8; ed25519_dalek::PUBLIC_KEY_LENGTH] = bytes.try_into().map_err(|_| {
            Error::Secret(format!(
                "an Ed25519 public key has {} bytes, not {}",
                ed25519_dalek::PUBLIC_KEY_LENGTH,
                bytes.len()
            ))
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| Error::Secret(format!("not an Ed25519 public key: {e}")))
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ed25519_dalek::PUBLIC_KEY_LENGTH] {
        self.0.as_bytes()
    }

    /// Checks a `webhook-signature` header the way a receiver does: any one of its
    /// space-separated `v1a,` signatures must verify (strictly: no malleable signatures).
    pub fn verify(
        &self,
        webhook_id: &str,
        timestamp_secs: u64,
        body: &[u8],
        header: &str,
    ) -> Result<()> {
        let content = signed_content(webhook_id, timestamp_secs, body);
        let matches = header
            .split(' ')
            .filter_map(|sig| sig.strip_prefix("v1a,"))
            .filter_map(|b64| BASE64.decode(b64).ok())
            .filter_map(|raw| Signature::from_slice(&raw).ok())
            .any(|sig| self.0.verify_strict(&content, &sig).is_ok());
        if matches {
            Ok(())
        } else {
            Err(Error::Signature(
                "no v1a signature matches this public key".into(),
            ))
        }
    }
}

fn signed_content(webhook_id: &str, timestamp_secs: u64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp_secs.to_string();
    let mut content = Vec::with_capacity(webhook_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(webhook_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032, section 7.1, test 1: the empty message.
    #[test]
    fn rfc8032_test_vector() {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .expect("hex");
        let key = Ed25519Key::from_bytes(&seed).expect("32 bytes");
        assert_eq!(
            hex::encode(key.public_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let signature = key.0.sign(b"");
        assert_eq!(
            hex::encode(signature.to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn signs_and_verifies_only_the_exact_content() {
        let key = Ed25519Key::generate().expect("rng");
        let other = Ed25519Key::generate().expect("rng");
        let header = format!("v1,bm90IHRoaXM= {}", key.sign("msg_1", 10, b"{}"));
        let public = PublicKey::parse(&key.public_key().to_string()).expect("parses");
        public
            .verify("msg_1", 10, b"{}", &header)
            .expect("verifies");
        assert!(public.verify("msg_2", 10, b"{}", &header).is_err());
        assert!(public.verify("msg_1", 11, b"{}", &header).is_err());
        assert!(public.verify("msg_1", 10, b"{ }", &header).is_err());
        assert!(
            other
                .public_key()
                .verify("msg_1", 10, b"{}", &header)
                .is_err()
        );
        assert!(format!("{key:?}").contains("<redacted>"));
        assert_eq!(
            Ed25519Key::from_bytes(key.as_bytes()).expect("round trip"),
            key
        );
    }

    #[test]
    fn rejects_malformed_public_keys() {
        assert!(PublicKey::parse("whsec_AAAA").is_err());
        assert!(PublicKey::parse("whpk_!!!").is_err());
        assert!(PublicKey::parse("whpk_c2hvcnQ=").is_err());
        assert!(Ed25519Key::from_bytes(&[1; 31]).is_err());
    }
}
