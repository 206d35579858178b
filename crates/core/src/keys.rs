//! Keys derived from `secrets.key`, one per use, so that no two uses share a key: HKDF-SHA256
//! (RFC 5869) with `secrets.key` as the input keying material and a label per use as the
//! `info`. A key learned from one use (say, a stream MAC key) opens no other.
//!
//! Sealing signing secrets at rest is the exception: it keeps `secrets.key` itself as its
//! XChaCha20-Poly1305 key, so that every value sealed before stays readable and nodes of
//! different builds open each other's replicated records. That is the raw key's only use
//! besides being HKDF's input (docs/operations.md, "Keys").

use hkdf::Hkdf;
use sha2::Sha256;

/// What a derived key is for. Each has its own label; a label never changes, or every key
/// derived under it would change with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// MACs of the entries and batches of the replication streams.
    StreamMac,
    /// MACs of access tokens (`hwa_…`).
    AccessTokenMac,
}

impl KeyUse {
    /// The HKDF `info` of this use.
    pub fn label(self) -> &'static [u8] {
        match self {
            Self::StreamMac => b"hookwire/v1/stream-mac",
            Self::AccessTokenMac => b"hookwire/v1/access-token-mac",
        }
    }
}

/// The salt of every derivation: fixed and public, as RFC 5869 allows; it only separates
/// hookwire's derivations from any other use of the same input key.
const SALT: &[u8] = b"hookwire key derivation";

/// The 32-byte key for `key_use`, derived from `secrets_key`.
pub fn derive(secrets_key: &[u8; 32], key_use: KeyUse) -> [u8; 32] {
    let mut out = [0; 32];
    Hkdf::<Sha256>::new(Some(SALT), secrets_key)
        .expand(key_use.label(), &mut out)
        .expect("32 bytes is within HKDF-SHA256's output limit");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_use_and_each_key_derive_another_key() {
        let key = [7; 32];
        let stream = derive(&key, KeyUse::StreamMac);
        let tokens = derive(&key, KeyUse::AccessTokenMac);
        assert_ne!(stream, tokens);
        assert_ne!(stream, key);
        assert_ne!(tokens, key);
        assert_eq!(stream, derive(&key, KeyUse::StreamMac), "deterministic");
        assert_ne!(stream, derive(&[8; 32], KeyUse::StreamMac));
    }

    #[test]
    fn the_derivation_is_hkdf_sha256_with_the_label() {
        // RFC 5869 by hand: PRK = HMAC(salt, ikm); OKM = HMAC(PRK, info ‖ 0x01).
        use hmac::{Hmac, Mac};
        let key = [3; 32];
        let mut extract = Hmac::<Sha256>::new_from_slice(SALT).expect("any key length");
        extract.update(&key);
        let prk = extract.finalize().into_bytes();
        let mut expand = Hmac::<Sha256>::new_from_slice(&prk).expect("any key length");
        expand.update(b"hookwire/v1/stream-mac");
        expand.update(&[1]);
        let okm: [u8; 32] = expand.finalize().into_bytes().into();
        assert_eq!(derive(&key, KeyUse::StreamMac), okm);
    }
}
