//! `amqp.tls_*`: a private CA, a client certificate and the server name for `amqps://`
//! brokers. The shape is checked here and each file must be readable; hookwire-amqp
//! parses the PEM when it builds its connector, with errors naming the same keys.

use super::*;

/// The `amqp.tls_*` keys that name files, with their values.
fn tls_files(amqp: &AmqpConfig) -> [(&'static str, Option<&PathBuf>); 3] {
    [
        ("amqp.tls_ca_file", amqp.tls_ca_file.as_ref()),
        (
            "amqp.tls_client_certificate",
            amqp.tls_client_certificate.as_ref(),
        ),
        ("amqp.tls_client_key", amqp.tls_client_key.as_ref()),
    ]
}

/// Whether `name` can be a TLS server name: a DNS name (letters, digits, `-`, dots
/// between labels) or an IP address.
fn is_server_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl AmqpConfig {
    /// The first `amqp.tls_*` key that is set, if any.
    fn first_tls_key(&self) -> Option<&'static str> {
        tls_files(self)
            .into_iter()
            .find_map(|(key, path)| path.map(|_| key))
            .or(self
                .tls_server_name
                .as_ref()
                .map(|_| "amqp.tls_server_name"))
    }

    /// Whether any `amqp.tls_*` key is set: connections then use hookwire's own TLS
    /// settings rather than the platform's defaults.
    pub fn has_tls_settings(&self) -> bool {
        self.first_tls_key().is_some()
    }

    /// The `amqp.tls_*` keys: only with `amqps://` URLs, the certificate and its key
    /// together, every file readable, the server name a DNS name or an IP address.
    pub(super) fn validate_tls(&self) -> Result<()> {
        let Some(first) = self.first_tls_key() else {
            return Ok(());
        };
        let urls_key = if self.urls.is_empty() {
            "amqp.url"
        } else {
            "amqp.urls"
        };
        if let Some(plain) = self
            .broker_urls()
            .iter()
            .find(|u| !u.starts_with("amqps://"))
        {
            return Err(invalid(
                first,
                format!(
                    "applies to amqps:// brokers only, and {urls_key} has {}",
                    redact_url(plain)
                ),
            ));
        }
        for (key, path) in tls_files(self) {
            let Some(path) = path else { continue };
            if path.as_os_str().is_empty() {
                return Err(invalid(key, "is empty: leave the key out for none"));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
            if !text.contains("-----BEGIN ") {
                return Err(invalid(
                    key,
                    format!("{} holds no PEM block", path.display()),
                ));
            }
        }
        match (&self.tls_client_certificate, &self.tls_client_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "amqp.tls_client_key",
                    "is required with amqp.tls_client_certificate",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "amqp.tls_client_certificate",
                    "is required with amqp.tls_client_key",
                ));
            }
            _ => {}
        }
        if let Some(name) = &self.tls_server_name
            && !is_server_name(name)
        {
            return Err(invalid(
                "amqp.tls_server_name",
                format!("`{name}` is not a DNS name or an IP address"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn amqps() -> AmqpConfig {
        let mut a = Config::defaults().amqp;
        a.url = "amqps://hookwire:s3cret@rabbit.internal:5671/hookwire".into();
        a
    }

    fn refusal(a: &AmqpConfig) -> (String, String) {
        match a.validate() {
            Err(Error::Config { key, message }) => (key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn pem_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn no_tls_key_is_the_platform_default() {
        let a = amqps();
        a.validate().expect("valid");
        assert!(!a.has_tls_settings());
    }

    #[test]
    fn complete_settings_are_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = amqps();
        a.tls_ca_file = Some(pem_file(&dir, "ca.pem", CERT));
        a.tls_client_certificate = Some(pem_file(&dir, "client.pem", CERT));
        a.tls_client_key = Some(pem_file(
            &dir,
            "client.key",
            "-----BEGIN PRIVATE KEY-----\nMIG\n-----END PRIVATE KEY-----\n",
        ));
        a.tls_server_name = Some("rabbit-1.internal".into());
        a.validate().expect("valid");
        assert!(a.has_tls_settings());
        a.tls_server_name = Some("10.0.0.7".into());
        a.validate().expect("an IP address is a server name too");
    }

    #[test]
    fn tls_keys_with_a_plain_url_are_refused_naming_the_key() {
        let mut a = amqps();
        a.set_broker_urls(vec![
            "amqps://u:s3cret@10.0.0.1:5671/%2f".into(),
            "amqp://u:s3cret@10.0.0.2:5672/%2f".into(),
        ]);
        a.tls_server_name = Some("rabbit.internal".into());
        let (key, message) = refusal(&a);
        assert_eq!(key, "amqp.tls_server_name");
        assert!(
            message.contains("amqps://") && message.contains("amqp.urls"),
            "{message}"
        );
        assert!(message.contains("10.0.0.2"), "{message}");
        assert!(
            !message.contains("s3cret"),
            "the password leaked: {message}"
        );
    }

    #[test]
    fn a_certificate_without_its_key_and_the_reverse_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = amqps();
        a.tls_client_certificate = Some(pem_file(&dir, "client.pem", CERT));
        assert_eq!(refusal(&a).0, "amqp.tls_client_key");
        a.tls_client_key = a.tls_client_certificate.take();
        assert_eq!(refusal(&a).0, "amqp.tls_client_certificate");
    }

    #[test]
    fn missing_empty_and_non_pem_files_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = amqps();
        a.tls_ca_file = Some(dir.path().join("absent.pem"));
        let (key, message) = refusal(&a);
        assert_eq!(key, "amqp.tls_ca_file");
        assert!(
            message.contains("cannot read") && message.contains("absent.pem"),
            "{message}"
        );
        a.tls_ca_file = Some(PathBuf::new());
        assert!(refusal(&a).1.contains("is empty"));
        a.tls_ca_file = Some(pem_file(&dir, "ca.der", "\u{30}\u{82}binary"));
        let (key, message) = refusal(&a);
        assert_eq!(key, "amqp.tls_ca_file");
        assert!(message.contains("no PEM block"), "{message}");
    }

    #[test]
    fn a_malformed_server_name_is_refused() {
        let mut a = amqps();
        for bad in [
            "",
            "rabbit internal",
            "-rabbit.internal",
            "rabbit..internal",
        ] {
            a.tls_server_name = Some(bad.into());
            let (key, message) = refusal(&a);
            assert_eq!(key, "amqp.tls_server_name", "{bad}");
            assert!(message.contains("not a DNS name"), "{message}");
        }
    }
}
