//! `amqp.url` or `amqp.urls`: the broker nodes, and the replication a cluster gives each
//! queue and stream.

use super::*;

/// The most replicas `amqp.replication_factor` may ask for (RabbitMQ advises odd numbers
/// up to 7).
pub const MAX_REPLICATION_FACTOR: u8 = 7;

/// Replicas chosen when `amqp.replication_factor` is unset: one per URL up to this many.
pub const DEFAULT_REPLICATION_CAP: usize = 3;

impl AmqpConfig {
    /// The broker URLs: `urls`, or `url` alone.
    pub fn broker_urls(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }

    /// Replaces the broker URLs with `urls` (`url` is cleared, as a file setting
    /// `amqp.urls` would leave it).
    pub fn set_broker_urls(&mut self, urls: Vec<String>) {
        self.url.clear();
        self.urls = urls;
    }

    /// The replicas each quorum queue and stream is declared with, or `None` for no
    /// replication arguments (the broker's defaults). Unset, it follows the URLs: one URL
    /// is one node and gets none, so a single broker's topology stays as it always was.
    pub fn replication(&self) -> Option<u8> {
        match self.replication_factor {
            Some(0) => None,
            Some(n) => Some(n),
            None => {
                let nodes = self.broker_urls().len();
                // At most DEFAULT_REPLICATION_CAP (3), which fits in a u8.
                (nodes > 1).then(|| nodes.min(DEFAULT_REPLICATION_CAP) as u8)
            }
        }
    }

    /// `url` or `urls`, never both, each an AMQP URL; `replication_factor` in range.
    pub(super) fn validate_urls(&self) -> Result<()> {
        match (self.url.is_empty(), self.urls.is_empty()) {
            (false, false) => {
                return Err(invalid(
                    "amqp.urls",
                    "set either amqp.url or amqp.urls, not both",
                ));
            }
            (true, true) => {
                return Err(invalid(
                    "amqp.url",
                    "is required (or amqp.urls, a list of URLs)",
                ));
            }
            (false, true) => {
                if !is_amqp_url(&self.url) {
                    return Err(invalid("amqp.url", "must start with amqp:// or amqps://"));
                }
            }
            (true, false) => {
                for (i, url) in self.urls.iter().enumerate() {
                    if !is_amqp_url(url) {
                        return Err(invalid(
                            "amqp.urls",
                            format!(
                                "URL {} ({}) must start with amqp:// or amqps://",
                                i + 1,
                                redact_url(url)
                            ),
                        ));
                    }
                    if self.urls[..i].contains(url) {
                        return Err(invalid(
                            "amqp.urls",
                            format!("URL {} ({}) is listed twice", i + 1, redact_url(url)),
                        ));
                    }
                }
            }
        }
        if self
            .replication_factor
            .is_some_and(|n| n > MAX_REPLICATION_FACTOR)
        {
            return Err(invalid(
                "amqp.replication_factor",
                format!("must be at most {MAX_REPLICATION_FACTOR} (0: no replication arguments)"),
            ));
        }
        Ok(())
    }
}

fn is_amqp_url(url: &str) -> bool {
    url.starts_with("amqp://") || url.starts_with("amqps://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amqp() -> AmqpConfig {
        Config::defaults().amqp
    }

    fn key_of(result: Result<()>) -> (String, String) {
        match result {
            Err(Error::Config { key, message }) => (key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    const NODES: [&str; 3] = [
        "amqp://hookwire:s3cret@10.0.0.1:5672/hookwire",
        "amqp://hookwire:s3cret@10.0.0.2:5672/hookwire",
        "amqp://hookwire:s3cret@10.0.0.3:5672/hookwire",
    ];

    #[test]
    fn url_alone_is_one_broker_without_replication_arguments() {
        let a = amqp();
        a.validate().expect("the default url is valid");
        assert_eq!(a.broker_urls(), vec![a.url.clone()]);
        assert_eq!(a.replication(), None);
    }

    #[test]
    fn urls_replace_url_and_replicate_up_to_three() {
        let mut a = amqp();
        a.set_broker_urls(NODES[..2].iter().map(|s| s.to_string()).collect());
        a.validate().expect("two nodes are valid");
        assert_eq!(a.broker_urls().len(), 2);
        assert_eq!(a.replication(), Some(2));
        let mut five: Vec<String> = NODES.iter().map(|s| s.to_string()).collect();
        five.push("amqp://h:p@10.0.0.4:5672/%2f".into());
        five.push("amqp://h:p@10.0.0.5:5672/%2f".into());
        a.set_broker_urls(five);
        assert_eq!(a.replication(), Some(3), "capped at 3");
        a.replication_factor = Some(5);
        assert_eq!(a.replication(), Some(5), "an explicit factor wins");
        a.replication_factor = Some(0);
        assert_eq!(a.replication(), None, "0 sets no arguments");
    }

    #[test]
    fn url_and_urls_together_are_refused() {
        let mut a = amqp();
        a.urls = vec![NODES[0].into()];
        let (key, message) = key_of(a.validate());
        assert_eq!(key, "amqp.urls");
        assert!(message.contains("not both"), "{message}");
    }

    #[test]
    fn neither_url_nor_urls_is_refused() {
        let mut a = amqp();
        a.set_broker_urls(Vec::new());
        assert_eq!(key_of(a.validate()).0, "amqp.url");
    }

    #[test]
    fn each_of_urls_is_checked_and_named_without_its_password() {
        let mut a = amqp();
        a.set_broker_urls(vec![
            NODES[0].into(),
            "http://hookwire:s3cret@10.0.0.2/".into(),
        ]);
        let (key, message) = key_of(a.validate());
        assert_eq!(key, "amqp.urls");
        assert!(message.contains("URL 2"), "{message}");
        assert!(
            !message.contains("s3cret"),
            "the password leaked: {message}"
        );
        a.set_broker_urls(vec![NODES[0].into(), NODES[0].into()]);
        let (_, message) = key_of(a.validate());
        assert!(message.contains("listed twice"), "{message}");
        assert!(
            !message.contains("s3cret"),
            "the password leaked: {message}"
        );
    }

    #[test]
    fn replication_factor_is_bounded() {
        let mut a = amqp();
        a.replication_factor = Some(MAX_REPLICATION_FACTOR + 1);
        assert_eq!(key_of(a.validate()).0, "amqp.replication_factor");
    }

    #[test]
    fn debug_hides_every_password() {
        let mut a = amqp();
        a.set_broker_urls(NODES.iter().map(|s| s.to_string()).collect());
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("10.0.0.3"), "{shown}");
    }

    #[test]
    fn urls_read_back_from_toml() {
        let mut c = Config::defaults();
        c.amqp
            .set_broker_urls(NODES.iter().map(|s| s.to_string()).collect());
        c.amqp.replication_factor = Some(3);
        let back: Config = toml::from_str(&c.to_toml()).expect("parses");
        assert_eq!(back.amqp.urls, c.amqp.urls);
        assert!(back.amqp.url.is_empty());
        assert_eq!(back.amqp.replication_factor, Some(3));
    }
}
