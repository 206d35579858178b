//! W3C Trace Context (`traceparent`, `tracestate`): read from a producer's AMQP headers,
//! carried in every task of the event, and sent on the webhook request.
//!
//! A malformed `traceparent` is ignored, as the W3C recommendation says: hookwire then
//! starts a new trace (when it exports spans) or sends none. A `tracestate` without a
//! valid `traceparent` is ignored with it.

use std::fmt;

/// The `traceparent` header (AMQP and HTTP).
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header (AMQP and HTTP).
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` kept: 32 members of the recommendation's 512 characters in
/// all; a longer one is dropped rather than cut.
pub const MAX_TRACESTATE_CHARS: usize = 512;

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// One span's place in a trace: what a `traceparent` says.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    /// The trace id; never all zeros.
    pub trace_id: [u8; 16],
    /// The span's id (the parent of whatever it is sent to); never all zeros.
    pub span_id: [u8; 8],
    /// The trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

impl fmt::Debug for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl SpanContext {
    /// Parses a `traceparent` (version 00, or a later version's first four fields, as the
    /// recommendation asks of a version 00 reader); `None` when it is malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_bytes::<1>(&text[0..2])?[0];
        let valid_length = match version {
            0xff => return None,
            0x00 => bytes.len() == 55,
            _ => bytes.len() == 55 || bytes[55] == b'-',
        };
        if !valid_length || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(&text[3..35])?;
        let span_id = hex_bytes::<8>(&text[36..52])?;
        let flags = hex_bytes::<1>(&text[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new trace: random ids, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero(rand::random),
            span_id: new_span_id(),
            flags: SAMPLED,
        }
    }

    /// A span of the same trace, with a new id, under this one.
    pub fn new_child(&self) -> Self {
        Self {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// Whether the trace is sampled: spans of it are recorded.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` of this span (version 00).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            self.flags
        )
    }

    /// The trace id in lowercase hex, as OTLP/JSON writes it.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The span id in lowercase hex.
    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }
}

/// The trace context a delivery carries: the span its attempts are children of, and the
/// producer's `tracestate`, passed on unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// The parent span.
    pub context: SpanContext,
    /// The vendors' `tracestate`, when there was a valid one.
    pub state: Option<String>,
}

impl TraceParent {
    /// Reads the two headers; `None` when `traceparent` is missing or malformed. A
    /// malformed or over-long `tracestate` is dropped on its own.
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let context = SpanContext::parse(traceparent?.trim())?;
        let state = tracestate
            .map(str::trim)
            .filter(|s| is_valid_tracestate(s))
            .map(str::to_owned);
        Some(Self { context, state })
    }
}

/// A `tracestate` worth passing on: non-empty, at most [`MAX_TRACESTATE_CHARS`], and made
/// of `key=value` members of printable ASCII without the separators they may not hold.
pub fn is_valid_tracestate(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_TRACESTATE_CHARS
        && text.split(',').map(str::trim).all(|member| {
            member.is_empty()
                || member.split_once('=').is_some_and(|(key, value)| {
                    !key.is_empty()
                        && !value.is_empty()
                        && key.bytes().all(|b| {
                            b.is_ascii_lowercase()
                                || b.is_ascii_digit()
                                || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
                        })
                        && value
                            .bytes()
                            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
                })
        })
}

/// A new random span id, never all zeros.
pub fn new_span_id() -> [u8; 8] {
    nonzero(rand::random)
}

fn nonzero<const N: usize>(random: impl Fn() -> [u8; N]) -> [u8; N] {
    loop {
        let id = random();
        if id != [0; N] {
            return id;
        }
    }
}

/// Exactly `2 * N` lowercase hex digits.
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = SpanContext::parse(VALID).expect("valid");
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id_hex(), "00f067aa0ba902b7");
        assert!(context.sampled());
        assert_eq!(context.traceparent(), VALID);
        let unsampled = SpanContext::parse(&VALID.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.sampled());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            // Upper-case hex, which the recommendation forbids.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // All-zero trace id and span id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff is invalid; version 00 has nothing after the flags.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // Wrong separators and lengths.
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::parse(bad), None, "{bad:?} should be refused");
            assert_eq!(TraceParent::from_headers(Some(bad), Some("a=b")), None);
        }
    }

    #[test]
    fn a_later_version_is_read_as_far_as_version_00_goes() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        let context = SpanContext::parse(later).expect("read");
        assert_eq!(context.traceparent(), VALID);
    }

    #[test]
    fn tracestate_is_kept_when_valid_and_dropped_when_not() {
        let kept = TraceParent::from_headers(Some(VALID), Some("congo=t61rcWkgMzE,rojo=00f067"))
            .expect("valid");
        assert_eq!(kept.state.as_deref(), Some("congo=t61rcWkgMzE,rojo=00f067"));
        for bad in ["", "novalue", "UPPER=x", "a=b\u{1}c", &"k=v,".repeat(200)] {
            let dropped = TraceParent::from_headers(Some(VALID), Some(bad)).expect("valid");
            assert_eq!(dropped.state, None, "{bad:?} should be dropped");
        }
        assert_eq!(TraceParent::from_headers(None, Some("a=b")), None);
    }

    #[test]
    fn children_stay_in_the_trace_with_new_span_ids() {
        let root = SpanContext::new_root();
        assert!(root.sampled());
        let child = root.new_child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(SpanContext::parse(&child.traceparent()), Some(child));
    }
}
