//! Encryption of signing secrets at rest: XChaCha20-Poly1305 with a random 192-bit nonce
//! per secret (safe to draw at random, unlike ChaCha20's 96 bits), and associated data
//! chosen by the caller (the subscription id and the key's expiry), so that a sealed
//! secret cannot be moved to another row or given another expiry.
//!
//! A sealed value is `MAGIC ‖ key id ‖ nonce ‖ ciphertext`: the key id names the key it
//! was sealed under, so that `secrets.key` can be rotated with the old keys kept
//! readable (`secrets.previous_keys`). Values of the first format, `nonce ‖ ciphertext`
//! sealed under one key with the subscription id alone as associated data, still open.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::{Error, Result};

const NONCE_LEN: usize = 24;
/// Marks the format with a key id. A first-format value starts with a random nonce, so it
/// may start with these bytes too (one in 2^24): opening then falls back to that format.
const MAGIC: &[u8; 3] = b"hw\x01";
const KEY_ID_LEN: usize = 4;

/// One key and its id.
#[derive(Clone)]
struct Key {
    id: [u8; KEY_ID_LEN],
    aead: XChaCha20Poly1305,
}

impl Key {
    fn new(key: &[u8; 32]) -> Self {
        let aead = XChaCha20Poly1305::new(key.into());
        // A pseudorandom function of the key (its keystream under a fixed nonce): names
        // the key without revealing it.
        let stream = aead
            .encrypt(&XNonce::default(), &b"hookwire key id"[..])
            .expect("encrypting a fixed block cannot fail");
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&stream[..KEY_ID_LEN]);
        Self { id, aead }
    }

    fn open(&self, nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.aead
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

/// Seals with the current `secrets.key`; opens with it or any of `secrets.previous_keys`.
#[derive(Clone)]
pub(crate) struct Sealer {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<keys redacted>)")
    }
}

impl Sealer {
    pub(crate) fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        Self {
            current: Key::new(current),
            previous: previous.iter().map(Key::new).collect(),
        }
    }

    /// Whether any previous key is configured.
    pub(crate) fn has_previous(&self) -> bool {
        !self.previous.is_empty()
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// `MAGIC ‖ key id ‖ nonce ‖ ciphertext`, under the current key.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .current
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Corrupt("encryption failed".into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + NONCE_LEN + ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a value sealed with `aad`, or, in the first format, with `legacy_aad`.
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8], legacy_aad: &[u8]) -> Result<Vec<u8>> {
        if let Some(rest) = sealed.strip_prefix(MAGIC)
            && rest.len() >= KEY_ID_LEN + NONCE_LEN
        {
            let (id, rest) = rest.split_at(KEY_ID_LEN);
            let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
            for key in self.keys().filter(|k| k.id == id) {
                if let Ok(plain) = key.open(nonce, ciphertext, aad) {
                    return Ok(plain);
                }
            }
        }
        if sealed.len() < NONCE_LEN {
            return Err(Error::Unseal);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.keys()
            .find_map(|k| k.open(nonce, ciphertext, legacy_aad).ok())
            .ok_or(Error::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first format, as the previous hookwire sealed it.
    fn legacy_seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let aead = XChaCha20Poly1305::new(key.into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(
            aead.encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("seals"),
        );
        out
    }

    #[test]
    fn round_trip_and_binding() {
        let sealer = Sealer::new(&[7; 32], &[]);
        let sealed = sealer.seal(b"secret", b"row-1").expect("seals");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            sealer.open(&sealed, b"row-1", b"row-1").expect("opens"),
            b"secret"
        );
        assert!(matches!(
            sealer.open(&sealed, b"row-2", b"row-1"),
            Err(Error::Unseal)
        ));
        assert!(matches!(
            Sealer::new(&[8; 32], &[]).open(&sealed, b"row-1", b"row-1"),
            Err(Error::Unseal)
        ));
        assert!(matches!(
            sealer.open(b"short", b"row-1", b"row-1"),
            Err(Error::Unseal)
        ));
    }

    #[test]
    fn each_value_names_its_key_and_old_keys_stay_readable() {
        let old = Sealer::new(&[1; 32], &[]);
        let sealed = old.seal(b"secret", b"aad").expect("seals");
        assert_eq!(&sealed[..3], MAGIC);
        assert_eq!(&sealed[3..7], &old.current.id);
        let rotated = Sealer::new(&[2; 32], &[[1; 32]]);
        assert_eq!(
            rotated.open(&sealed, b"aad", b"-").expect("opens"),
            b"secret"
        );
        let resealed = rotated.seal(b"secret", b"aad").expect("seals");
        assert_eq!(&resealed[3..7], &rotated.current.id);
        assert_ne!(rotated.current.id, old.current.id);
        // Without the old key, the old value no longer opens; the new one does.
        let new_only = Sealer::new(&[2; 32], &[]);
        assert!(matches!(
            new_only.open(&sealed, b"aad", b"-"),
            Err(Error::Unseal)
        ));
        assert_eq!(
            new_only.open(&resealed, b"aad", b"-").expect("opens"),
            b"secret"
        );
    }

    #[test]
    fn values_of_the_first_format_still_open() {
        let legacy = legacy_seal(&[1; 32], b"secret", b"row-1");
        let sealer = Sealer::new(&[2; 32], &[[1; 32]]);
        assert_eq!(
            sealer
                .open(&legacy, b"row-1+expiry", b"row-1")
                .expect("opens"),
            b"secret"
        );
        assert!(matches!(
            sealer.open(&legacy, b"row-1+expiry", b"row-2"),
            Err(Error::Unseal)
        ));
    }
}
