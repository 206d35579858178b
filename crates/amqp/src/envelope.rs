//! The envelope of every entry and batch on the replication streams (`<ns>.changes`,
//! `<ns>.attempts`, `<ns>.payloads`): who wrote it, where it belongs, and a MAC under the
//! stream key derived from `secrets.key` (`hookwire_core::keys`), so that a node applies
//! only what a node holding the key wrote for that very stream.
//!
//! ```text
//! "HWS" ‖ version (1 byte) ‖ stream name (1-byte length ‖ bytes) ‖ node (1-byte length ‖
//! bytes) ‖ session (16 bytes) ‖ sequence (u64, big-endian) ‖ body (u32 length ‖ bytes) ‖
//! HMAC-SHA256 of everything before it (32 bytes)
//! ```
//!
//! The stream name binds an envelope to one stream of one namespace. The node, a session
//! drawn at random by each publisher when it starts, and a sequence that publisher raises
//! by one per envelope let a reader refuse an envelope copied and published again: the
//! copy comes after its original in the stream, so its sequence is not above the last one
//! the reader took from that session.
//!
//! Every later version keeps `"HWS" ‖ version` first and the MAC over everything before it
//! last, so that a node authenticates an envelope of a version it does not know before it
//! stops on it, and a forged "future" envelope stops nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The version this build writes and reads.
pub const VERSION: u8 = 1;
const MAGIC: &[u8; 3] = b"HWS";
const TAG_LEN: usize = 32;

/// Who wrote an envelope, and its place in that writer's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The writer's node id.
    pub node: String,
    /// The publisher's session: drawn at random when it starts.
    pub session: Uuid,
    /// Raised by one per envelope within the session, in the order published.
    pub seq: u64,
}

/// An authentic envelope of this version, opened.
#[derive(Debug)]
pub struct Opened<'a> {
    /// Who wrote it.
    pub origin: Origin,
    /// What it carries: an entry of the changes stream, or a batch.
    pub body: &'a [u8],
}

/// Why an envelope is not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No envelope at all: anything without the marker (an entry of a build before
    /// envelopes, or something else).
    #[error("not sealed (no envelope)")]
    Unsealed,
    /// The marker, but the lengths do not add up: cut short, or bytes added.
    #[error("malformed (truncated or extended)")]
    Malformed,
    /// The MAC does not verify: altered, made up, or sealed under another `secrets.key`.
    #[error("its MAC does not verify")]
    Forged,
    /// Authentic, but sealed for another stream or namespace.
    #[error("sealed for the stream `{0}`")]
    OtherStream(&'static str),
    /// Authentic, of a version this build does not know: written by a newer hookwire.
    #[error("of envelope version {0}, which this build does not know")]
    UnknownVersion(u8),
}

impl Refused {
    /// A label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unsealed => "unsealed",
            Self::Malformed => "malformed",
            Self::Forged | Self::OtherStream(_) => "forged",
            Self::UnknownVersion(_) => "unknown_version",
        }
    }
}

/// The key that seals envelopes, and the keys that open them. `Debug` hides them.
#[derive(Clone)]
pub struct StreamKey {
    current: [u8; 32],
    /// Derived from `secrets.previous_keys`: what was sealed before a key rotation
    /// still opens (a node rebuilt afterwards reads the whole stream).
    previous: Vec<[u8; 32]>,
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

impl StreamKey {
    /// The stream MAC key derived from `secrets.key`.
    pub fn derive(secrets_key: &[u8; 32]) -> Self {
        Self {
            current: derive(secrets_key),
            previous: Vec::new(),
        }
    }

    /// Opens, as well, what was sealed under the keys derived from `previous`
    /// (`secrets.previous_keys`).
    pub fn with_previous(mut self, previous: &[[u8; 32]]) -> Self {
        self.previous = previous.iter().map(derive).collect();
        self
    }

    /// `body` sealed for `stream` as `origin` wrote it.
    pub fn seal(&self, stream: &str, origin: &Origin, body: &[u8]) -> Vec<u8> {
        self.seal_as(VERSION, stream, origin, body)
    }

    /// [`StreamKey::seal`] with another version byte, in this version's layout: what a
    /// newer build's envelope looks like to this one (for tests of the version gate).
    ///
    /// # Panics
    /// When `stream` or `origin.node` is over 255 bytes, or `body` over 4 GiB: hookwire's
    /// names are at most 64 bytes, and a message at most the broker's 16 MiB.
    pub fn seal_as(&self, version: u8, stream: &str, origin: &Origin, body: &[u8]) -> Vec<u8> {
        let short = |s: &str| u8::try_from(s.len()).expect("a name of at most 255 bytes");
        let mut out = Vec::with_capacity(
            MAGIC.len() + 3 + stream.len() + origin.node.len() + 16 + 8 + 4 + body.len() + TAG_LEN,
        );
        out.extend_from_slice(MAGIC);
        out.push(version);
        out.push(short(stream));
        out.extend_from_slice(stream.as_bytes());
        out.push(short(&origin.node));
        out.extend_from_slice(origin.node.as_bytes());
        out.extend_from_slice(origin.session.as_bytes());
        out.extend_from_slice(&origin.seq.to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(body.len())
                .expect("a body of at most 4 GiB")
                .to_be_bytes(),
        );
        out.extend_from_slice(body);
        let tag = mac(&self.current, &out).finalize().into_bytes();
        out.extend_from_slice(&tag);
        out
    }

    /// The envelope `raw` read from `stream`, if it is authentic, of this version and
    /// sealed for `stream`.
    pub fn open<'a>(&self, stream: &str, raw: &'a [u8]) -> Result<Opened<'a>, Refused> {
        if !raw.starts_with(MAGIC) {
            return Err(if MAGIC.starts_with(raw) {
                Refused::Malformed
            } else {
                Refused::Unsealed
            });
        }
        let Some(&version) = raw.get(MAGIC.len()) else {
            return Err(Refused::Malformed);
        };
        if version != VERSION {
            let Some(split) = raw.len().checked_sub(TAG_LEN).filter(|&n| n > MAGIC.len()) else {
                return Err(Refused::Malformed);
            };
            let (signed, tag) = raw.split_at(split);
            self.verify(signed, tag)?;
            return Err(Refused::UnknownVersion(version));
        }
        let mut reader = Reader(&raw[MAGIC.len() + 1..]);
        let parsed = (|| {
            let sealed_for = reader.short()?;
            let node = reader.short()?;
            let session = Uuid::from_bytes(reader.take(16)?.try_into().ok()?);
            let seq = u64::from_be_bytes(reader.take(8)?.try_into().ok()?);
            let len = u32::from_be_bytes(reader.take(4)?.try_into().ok()?);
            let body = reader.take(usize::try_from(len).ok()?)?;
            let tag = reader.take(TAG_LEN)?;
            reader.0.is_empty().then_some(())?;
            Some((sealed_for, node, session, seq, body, tag))
        })();
        let (sealed_for, node, session, seq, body, tag) = parsed.ok_or(Refused::Malformed)?;
        self.verify(&raw[..raw.len() - TAG_LEN], tag)?;
        if sealed_for != stream.as_bytes() {
            return Err(Refused::OtherStream(stream_kind(sealed_for)));
        }
        let node = std::str::from_utf8(node).map_err(|_| Refused::Malformed)?;
        Ok(Opened {
            origin: Origin {
                node: node.to_owned(),
                session,
                seq,
            },
            body,
        })
    }

    /// `Ok` if `tag` is the MAC of `signed` under the current key or a previous one.
    fn verify(&self, signed: &[u8], tag: &[u8]) -> Result<(), Refused> {
        // `verify_slice` compares in constant time.
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|key| mac(key, signed).verify_slice(tag).is_ok())
            .then_some(())
            .ok_or(Refused::Forged)
    }
}

fn derive(secrets_key: &[u8; 32]) -> [u8; 32] {
    hookwire_core::keys::derive(secrets_key, hookwire_core::keys::KeyUse::StreamMac)
}

fn mac(key: &[u8; 32], signed: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(signed);
    mac
}

/// Which kind of stream a name is, for a refusal's message (the name itself may be an
/// attacker's text).
fn stream_kind(name: &[u8]) -> &'static str {
    for kind in ["changes", "attempts", "payloads"] {
        if name.ends_with(kind.as_bytes()) {
            return kind;
        }
    }
    "unknown"
}

/// Reads an envelope's fields in order; `None` past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(taken)
    }

    fn short(&mut self) -> Option<&'a [u8]> {
        let len = *self.take(1)?.first()?;
        self.take(usize::from(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            node: "node-a".into(),
            session: Uuid::from_u128(42),
            seq: 7,
        }
    }

    #[test]
    fn a_sealed_envelope_opens_for_its_stream_only() {
        let key = StreamKey::derive(&[1; 32]);
        let sealed = key.seal("ns.changes", &origin(), b"{\"op\":\"mark\"}");
        let opened = key.open("ns.changes", &sealed).expect("opens");
        assert_eq!(opened.origin, origin());
        assert_eq!(opened.body, b"{\"op\":\"mark\"}");
        assert_eq!(
            key.open("ns.attempts", &sealed)
                .expect_err("another stream"),
            Refused::OtherStream("changes")
        );
        assert_eq!(
            key.open("other.changes", &sealed)
                .expect_err("another namespace"),
            Refused::OtherStream("changes")
        );
        assert_eq!(
            StreamKey::derive(&[2; 32])
                .open("ns.changes", &sealed)
                .expect_err("another key"),
            Refused::Forged
        );
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let key = StreamKey::derive(&[1; 32]);
        let sealed = key.seal("ns.changes", &origin(), b"body");
        for i in 0..sealed.len() {
            let mut changed = sealed.clone();
            changed[i] ^= 0x01;
            let refused = key.open("ns.changes", &changed).expect_err("changed");
            assert!(
                matches!(
                    refused,
                    Refused::Forged | Refused::Malformed | Refused::Unsealed
                ),
                "byte {i}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_cut_or_extended_envelope_is_malformed() {
        let key = StreamKey::derive(&[1; 32]);
        let sealed = key.seal("ns.payloads", &origin(), &[9; 100]);
        for len in 0..sealed.len() {
            assert_eq!(
                key.open("ns.payloads", &sealed[..len]).expect_err("cut"),
                Refused::Malformed,
                "cut to {len}"
            );
        }
        let mut extended = sealed.clone();
        extended.push(0);
        assert_eq!(
            key.open("ns.payloads", &extended).expect_err("extended"),
            Refused::Malformed
        );
        assert_eq!(
            key.open("ns.payloads", b"{\"op\":\"upsert\"}")
                .expect_err("no envelope"),
            Refused::Unsealed
        );
    }

    #[test]
    fn what_was_sealed_before_a_key_rotation_still_opens() {
        let old = StreamKey::derive(&[1; 32]);
        let sealed = old.seal("ns.changes", &origin(), b"body");
        let rotated = StreamKey::derive(&[2; 32]).with_previous(&[[1; 32]]);
        assert_eq!(
            rotated.open("ns.changes", &sealed).expect("opens").body,
            b"body"
        );
        assert_eq!(
            StreamKey::derive(&[2; 32])
                .open("ns.changes", &sealed)
                .expect_err("without the old key"),
            Refused::Forged
        );
    }

    #[test]
    fn an_authentic_future_version_is_told_from_a_forged_one() {
        let key = StreamKey::derive(&[1; 32]);
        let future = key.seal_as(VERSION + 1, "ns.changes", &origin(), b"new");
        assert_eq!(
            key.open("ns.changes", &future).expect_err("future"),
            Refused::UnknownVersion(VERSION + 1)
        );
        let forged =
            StreamKey::derive(&[2; 32]).seal_as(VERSION + 1, "ns.changes", &origin(), b"new");
        assert_eq!(
            key.open("ns.changes", &forged).expect_err("forged"),
            Refused::Forged
        );
    }
}
