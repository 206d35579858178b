//! `[delivery.proxy]`: the proxy every delivery, test event and resend leaves through, so
//! that an operator's webhook traffic comes from the proxy's fixed addresses.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::invalid;
use crate::Result;

/// The longest user name or password: SOCKS5's user/password method (RFC 1929) carries
/// each in one length byte.
pub const MAX_PROXY_CREDENTIAL_BYTES: usize = 255;

/// `[delivery.proxy]`. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `http://host:port` (an HTTP CONNECT proxy) or `socks5://host:port`, without
    /// credentials.
    pub url: String,
    /// The user name, when the proxy asks for credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password, for an environment variable
    /// (`HOOKWIRE_DELIVERY__PROXY__PASSWORD`); `password_file` keeps it out of the
    /// process environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A file whose content (without its trailing line break) is the password, read at
    /// start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// The protocol spoken to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP `CONNECT host:port` (RFC 9110, 9.3.6), for http and https targets alike.
    HttpConnect,
    /// SOCKS5 `CONNECT` (RFC 1928), with the user/password method (RFC 1929) when
    /// credentials are set.
    Socks5,
}

/// Where the proxy is and how to talk to it: `delivery.proxy.url`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddress {
    /// The protocol.
    pub kind: ProxyKind,
    /// The proxy's host name or IP literal (an IPv6 literal without brackets).
    pub host: String,
    /// The proxy's port.
    pub port: u16,
}

impl std::fmt::Display for ProxyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.kind {
            ProxyKind::HttpConnect => "http",
            ProxyKind::Socks5 => "socks5",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl ProxyConfig {
    /// The checked address: an `http` or `socks5` URL with a host and a port, and
    /// nothing else (no credentials, path, query or fragment).
    pub fn address(&self) -> Result<ProxyAddress> {
        const KEY: &str = "delivery.proxy.url";
        let text = &self.url;
        let url = url::Url::parse(text).map_err(|e| {
            invalid(
                KEY,
                format!("is not a URL like http://proxy.internal:3128 or socks5://proxy.internal:1080: {e}"),
            )
        })?;
        let kind = match url.scheme() {
            "http" => ProxyKind::HttpConnect,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => {
                return Err(invalid(
                    KEY,
                    "socks5h (names resolved by the proxy) is not supported: hookwire resolves and checks every target itself, then asks the proxy for the checked address; use socks5://",
                ));
            }
            other => {
                return Err(invalid(
                    KEY,
                    format!(
                        "scheme `{other}` is not supported: use http:// (HTTP CONNECT) or socks5://"
                    ),
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                KEY,
                "must not carry credentials: set delivery.proxy.username and password_file (or password)",
            ));
        }
        if url.path() != "/" && !url.path().is_empty()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(invalid(
                KEY,
                "must be only a scheme, a host and a port, like http://proxy.internal:3128",
            ));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(invalid(KEY, "has no host")),
        };
        // `url` drops a port equal to the scheme's default, so ask for the known default
        // too; SOCKS has none `url` knows, so it must be written.
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid(KEY, "must name the port, like socks5://proxy.internal:1080"))?;
        Ok(ProxyAddress { kind, host, port })
    }

    /// Everything but the password file's content, which [`ProxyConfig::password`] reads.
    pub fn validate(&self) -> Result<()> {
        self.address()?;
        if let Some(name) = &self.username
            && (name.is_empty()
                || name.len() > MAX_PROXY_CREDENTIAL_BYTES
                || name.contains(':')
                || name.chars().any(char::is_control))
        {
            return Err(invalid(
                "delivery.proxy.username",
                format!(
                    "must be 1 to {MAX_PROXY_CREDENTIAL_BYTES} bytes without `:` or control characters"
                ),
            ));
        }
        match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "delivery.proxy.password",
                    "set either password or password_file, not both",
                ));
            }
            (Some(_), None) | (None, Some(_)) if self.username.is_none() => {
                return Err(invalid(
                    "delivery.proxy.username",
                    "is required with a password",
                ));
            }
            (None, Some(path)) if path.as_os_str().is_empty() => {
                return Err(invalid(
                    "delivery.proxy.password_file",
                    "is empty: leave the key out for none",
                ));
            }
            (Some(password), None) => check_password("delivery.proxy.password", password)?,
            _ => {}
        }
        Ok(())
    }

    /// The password: `password`, or `password_file`'s content without its trailing line
    /// break; empty when only a user name is set. Errors name the key and the file, never
    /// the content.
    pub fn password(&self) -> Result<Option<String>> {
        const KEY: &str = "delivery.proxy.password_file";
        if let Some(password) = &self.password {
            return Ok(Some(password.clone()));
        }
        let Some(path) = &self.password_file else {
            return Ok(self.username.as_ref().map(|_| String::new()));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(KEY, format!("cannot read {}: {e}", path.display())))?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        check_password(KEY, password)?;
        Ok(Some(password.to_owned()))
    }
}

fn check_password(key: &str, password: &str) -> Result<()> {
    if password.len() > MAX_PROXY_CREDENTIAL_BYTES || password.chars().any(char::is_control) {
        return Err(invalid(
            key,
            format!(
                "the password must be at most {MAX_PROXY_CREDENTIAL_BYTES} bytes without control characters or more than one line"
            ),
        ));
    }
    Ok(())
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(url: &str) -> ProxyConfig {
        ProxyConfig {
            url: url.into(),
            username: None,
            password: None,
            password_file: None,
        }
    }

    fn refusal(config: &ProxyConfig) -> String {
        match config.validate() {
            Err(crate::Error::Config { key, message }) => format!("{key}: {message}"),
            other => panic!("{config:?} must be refused, got {other:?}"),
        }
    }

    #[test]
    fn the_url_is_an_http_or_socks5_proxy_with_a_host_and_port() {
        let http = proxy("http://127.0.0.1:3128").address().expect("http");
        assert_eq!(
            (http.kind, http.host.as_str(), http.port),
            (ProxyKind::HttpConnect, "127.0.0.1", 3128)
        );
        assert_eq!(
            proxy("http://proxy.internal")
                .address()
                .expect("default")
                .port,
            80
        );
        let socks = proxy("socks5://[::1]:1080").address().expect("socks5");
        assert_eq!(
            (socks.kind, socks.host.as_str()),
            (ProxyKind::Socks5, "::1")
        );
        assert_eq!(socks.to_string(), "socks5://[::1]:1080");
        for (url, says) in [
            ("not a url", "is not a URL"),
            ("ftp://127.0.0.1:21", "scheme `ftp` is not supported"),
            ("https://127.0.0.1:3128", "scheme `https` is not supported"),
            ("socks5h://127.0.0.1:1080", "socks5h"),
            ("socks5://127.0.0.1", "must name the port"),
            (
                "http://user:pass@127.0.0.1:3128",
                "must not carry credentials",
            ),
            (
                "http://127.0.0.1:3128/path",
                "only a scheme, a host and a port",
            ),
        ] {
            let message = refusal(&proxy(url));
            assert!(message.starts_with("delivery.proxy.url: "), "{message}");
            assert!(message.contains(says), "{url}: {message}");
            assert!(!message.contains("pass@"), "{message}");
        }
    }

    #[test]
    fn credentials_need_a_user_name_and_one_source_of_password() {
        let with =
            |username: Option<&str>, password: Option<&str>, file: Option<&str>| ProxyConfig {
                username: username.map(str::to_owned),
                password: password.map(str::to_owned),
                password_file: file.map(PathBuf::from),
                ..proxy("socks5://127.0.0.1:1080")
            };
        with(Some("hookwire"), Some("s3cret"), None)
            .validate()
            .expect("inline");
        with(Some("hookwire"), None, Some("/etc/p"))
            .validate()
            .expect("file");
        with(Some("hookwire"), None, None)
            .validate()
            .expect("user only");
        assert!(refusal(&with(Some("h"), Some("p"), Some("/etc/p"))).contains("not both"));
        assert!(refusal(&with(None, Some("p"), None)).starts_with("delivery.proxy.username"));
        assert!(refusal(&with(Some("a:b"), None, None)).starts_with("delivery.proxy.username"));
        assert!(
            refusal(&with(Some("h"), None, Some(""))).starts_with("delivery.proxy.password_file")
        );
        let debug = format!("{:?}", with(Some("hookwire"), Some("s3cret"), None));
        assert!(
            !debug.contains("s3cret") && debug.contains("<redacted>"),
            "{debug}"
        );
    }

    #[test]
    fn the_password_file_is_read_without_its_line_break_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("proxy-password");
        std::fs::write(&path, "s3cret\n").expect("write");
        let config = ProxyConfig {
            username: Some("hookwire".into()),
            password_file: Some(path.clone()),
            ..proxy("http://127.0.0.1:3128")
        };
        assert_eq!(config.password().expect("read").as_deref(), Some("s3cret"));
        std::fs::write(&path, "two\nlines\n").expect("write");
        let error = config.password().expect_err("two lines").to_string();
        assert!(
            !error.contains("two") && error.contains("password_file"),
            "{error}"
        );
        let missing = ProxyConfig {
            password_file: Some(dir.path().join("absent")),
            ..config
        };
        let error = missing.password().expect_err("missing").to_string();
        assert!(
            error.contains("delivery.proxy.password_file") && error.contains("absent"),
            "{error}"
        );
    }
}
