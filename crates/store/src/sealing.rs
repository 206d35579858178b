//! Encryption of signing secrets at rest: XChaCha20-Poly1305 with a random 192-bit nonce
//! per secret (safe to draw at random, unlike ChaCha20's 96 bits), and the subscription id
//! as associated data so that a sealed secret cannot be moved to another row.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::{Error, Result};

const NONCE_LEN: usize = 24;

/// Seals and opens secrets with the configured `secrets.key`.
#[derive(Clone)]
pub(crate) struct Sealer(XChaCha20Poly1305);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

impl Sealer {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(XChaCha20Poly1305::new(key.into()))
    }

    /// `nonce ‖ ciphertext`.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        let ciphertext = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Corrupt("encryption failed".into()))?;
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return Err(Error::Unseal);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| Error::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal(b"secret", b"row-1").expect("seals");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(sealer.open(&sealed, b"row-1").expect("opens"), b"secret");
        assert!(matches!(sealer.open(&sealed, b"row-2"), Err(Error::Unseal)));
        assert!(matches!(
            Sealer::new(&[8; 32]).open(&sealed, b"row-1"),
            Err(Error::Unseal)
        ));
        assert!(matches!(
            sealer.open(b"short", b"row-1"),
            Err(Error::Unseal)
        ));
    }
}
