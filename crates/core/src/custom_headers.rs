//! Static headers a webhook adds to every request: checked once when they are set, so
//! that an attempt only copies them.

use std::fmt;

/// The most custom headers one webhook has.
pub const MAX_CUSTOM_HEADERS: usize = 20;
/// The longest header name.
pub const MAX_HEADER_NAME_BYTES: usize = 64;
/// The longest header value.
pub const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// The most bytes of names and values together, so that the request head stays far below
/// what receivers and proxies accept (8 KiB is common).
pub const MAX_CUSTOM_HEADER_BYTES: usize = 4096;

/// Headers hookwire sets or that describe the connection rather than the request: a
/// webhook may not set them.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    // The W3C trace context hookwire passes on from the producer.
    "traceparent",
    "tracestate",
];

/// A header a webhook adds to every request. A secret one's value is sealed at rest like
/// the signing secret and never shown again.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomHeader {
    /// The name, lower case.
    pub name: String,
    /// The value. Empty for a secret header read without its secrets (a listing).
    pub value: String,
    /// Whether the value is a secret (an API key, a bearer token).
    pub secret: bool,
}

impl fmt::Debug for CustomHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.secret {
            "<redacted>"
        } else {
            &self.value
        };
        write!(f, "{}: {value}", self.name)
    }
}

/// Checks a header name and returns it in lower case; the error says why it is refused.
pub fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME_BYTES {
        return Err(format!(
            "header name `{name}` must have 1 to {MAX_HEADER_NAME_BYTES} characters"
        ));
    }
    // RFC 9110's token characters.
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c)))
    {
        return Err(format!(
            "header name `{name}` has `{}`: a name is letters, digits and !#$%&'*+-.^_`|~",
            bad.escape_default()
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("webhook-") {
        return Err(format!(
            "header `{name}` is reserved: `webhook-*` headers carry the signature"
        ));
    }
    if RESERVED.contains(&lower.as_str()) {
        return Err(format!(
            "header `{name}` is reserved: hookwire sets it, or it describes the connection"
        ));
    }
    Ok(lower)
}

/// Checks a header value: visible ASCII, spaces and tabs inside, at most
/// [`MAX_HEADER_VALUE_BYTES`].
pub fn check_value(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(format!(
            "the value of header `{name}` has more than {MAX_HEADER_VALUE_BYTES} bytes"
        ));
    }
    if value
        .bytes()
        .any(|b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Err(format!(
            "the value of header `{name}` may hold only visible ASCII characters, spaces and tabs"
        ));
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err(format!(
            "the value of header `{name}` may not start or end with white space"
        ));
    }
    Ok(())
}

/// Checks a webhook's whole set: each header, no name twice, and the bounds on their
/// number and size.
pub fn check_set(headers: &[CustomHeader]) -> Result<(), String> {
    if headers.len() > MAX_CUSTOM_HEADERS {
        return Err(format!(
            "a webhook has at most {MAX_CUSTOM_HEADERS} custom headers"
        ));
    }
    let mut total = 0;
    for (i, h) in headers.iter().enumerate() {
        if check_name(&h.name)? != h.name {
            return Err(format!("header name `{}` must be lower case", h.name));
        }
        check_value(&h.name, &h.value)?;
        if headers[..i].iter().any(|other| other.name == h.name) {
            return Err(format!("header `{}` is given twice", h.name));
        }
        total += h.name.len() + h.value.len();
    }
    if total > MAX_CUSTOM_HEADER_BYTES {
        return Err(format!(
            "custom headers have at most {MAX_CUSTOM_HEADER_BYTES} bytes of names and values together"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> CustomHeader {
        CustomHeader {
            name: name.into(),
            value: value.into(),
            secret: false,
        }
    }

    #[test]
    fn names_are_tokens_in_lower_case_and_not_reserved() {
        assert_eq!(check_name("X-Team").expect("valid"), "x-team");
        assert_eq!(check_name("authorization").expect("valid"), "authorization");
        for reserved in [
            "Webhook-Signature",
            "webhook-anything",
            "Content-Type",
            "host",
            "Connection",
            "Transfer-Encoding",
            "te",
            "upgrade",
            "content-length",
            "traceparent",
            "Tracestate",
        ] {
            let error = check_name(reserved).expect_err(reserved);
            assert!(error.contains("reserved"), "{error}");
        }
        assert!(check_name("").is_err());
        assert!(check_name("x team").is_err());
        assert!(check_name("x:team").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn values_are_visible_ascii_without_line_breaks() {
        check_value("x", "Bearer abc.def").expect("valid");
        check_value("x", "").expect("empty is valid");
        assert!(check_value("x", "a\r\nx-injected: 1").is_err());
        assert!(check_value("x", "a\0b").is_err());
        assert!(check_value("x", "caf\u{e9}").is_err());
        assert!(check_value("x", " padded").is_err());
        assert!(check_value("x", &"v".repeat(1025)).is_err());
    }

    #[test]
    fn a_set_has_distinct_names_within_its_bounds() {
        check_set(&[header("x-a", "1"), header("x-b", "2")]).expect("valid");
        assert!(check_set(&[header("x-a", "1"), header("x-a", "2")]).is_err());
        assert!(check_set(&[header("X-A", "1")]).is_err());
        let many: Vec<_> = (0..21).map(|i| header(&format!("x-{i}"), "v")).collect();
        assert!(check_set(&many).is_err());
        let big: Vec<_> = (0..5)
            .map(|i| header(&format!("x-{i}"), &"v".repeat(1000)))
            .collect();
        assert!(check_set(&big).is_err());
        let secret = CustomHeader {
            secret: true,
            ..header("authorization", "Bearer t0ken")
        };
        assert_eq!(format!("{secret:?}"), "authorization: <redacted>");
    }
}
