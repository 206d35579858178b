//! Configuration layers: the embedded defaults, then `--config FILE`, then the environment
//! (`HOOKWIRE_<SECTION>__<KEY>`); and what the commands read from them.

use std::path::Path;

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use hookwire_core::config::{AmqpConfig, DEFAULT_CONFIG_TOML, RENAMED_KEYS};
use serde::de::DeserializeOwned;

/// The layered configuration, not yet extracted.
pub fn layers(file: Option<&Path>) -> Result<Figment> {
    // The file and the environment: what the operator set, over the defaults.
    let mut set = Figment::new();
    if let Some(file) = file {
        // figment skips a missing file silently; a typo in --config must not.
        if !file.is_file() {
            bail!("config file {} does not exist", file.display());
        }
        set = set.merge(Toml::file(file));
    }
    // Only variables with `__` are config, so the CLI's HOOKWIRE_API_URL and
    // HOOKWIRE_API_TOKEN never reach `serve`'s configuration.
    let set = set.merge(
        Env::prefixed("HOOKWIRE_")
            .filter(|key| key.as_str().contains("__"))
            .split("__"),
    );
    let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG_TOML));
    // `amqp.urls` replaces the default `amqp.url`; setting both is refused by validation.
    if set.contains("amqp.urls") && !set.contains("amqp.url") {
        figment = figment.merge(Serialized::default("amqp.url", ""));
    }
    let figment = figment.merge(set);
    for (old, new) in RENAMED_KEYS {
        if figment.contains(old) {
            bail!(
                "config key `{old}` is now `{new}`, a duration such as \"30s\" or \"5m\"; rename it"
            );
        }
    }
    Ok(figment)
}

/// Extracts one section (or the whole tree with `""`), naming the key in any error.
pub fn extract<T: DeserializeOwned>(figment: &Figment, section: &str) -> Result<T> {
    let result = if section.is_empty() {
        figment.extract()
    } else {
        figment.extract_inner(section)
    };
    result
        .map_err(|e| {
            let errors: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!(errors.join("; "))
        })
        .with_context(|| {
            format!(
                "invalid configuration{}",
                if section.is_empty() {
                    String::new()
                } else {
                    format!(" in `{section}`")
                }
            )
        })
}

/// `[amqp]` alone: `topology` and `publish` need nothing else (no secrets key, no store).
pub fn amqp_section(figment: &Figment, namespace: Option<String>) -> Result<AmqpConfig> {
    let mut amqp: AmqpConfig = extract(figment, "amqp")?;
    if let Some(ns) = namespace {
        amqp.namespace = ns;
    }
    amqp.validate()?;
    Ok(amqp)
}

/// "cannot connect to the broker at …", every URL without its password.
pub fn unreachable(amqp: &AmqpConfig) -> String {
    let urls: Vec<String> = amqp
        .broker_urls()
        .iter()
        .map(|u| hookwire_core::config::redact_url(u))
        .collect();
    match urls.as_slice() {
        [one] => format!("cannot connect to the broker at {one}"),
        _ => format!("cannot connect to any broker of {}", urls.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amqp_of(file_text: &str) -> Result<AmqpConfig> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("hookwire.toml");
        std::fs::write(&path, file_text)?;
        amqp_section(&layers(Some(&path))?, None)
    }

    #[test]
    fn urls_in_a_file_replace_the_default_url() {
        let amqp = amqp_of(
            "[amqp]\nurls = [\"amqp://u:p@10.0.0.1:5672/%2f\", \"amqp://u:p@10.0.0.2:5672/%2f\"]\n",
        )
        .expect("valid");
        assert!(amqp.url.is_empty());
        assert_eq!(amqp.broker_urls().len(), 2);
        assert_eq!(amqp.replication(), Some(2));
    }

    #[test]
    fn url_and_urls_in_one_file_are_refused() {
        let error = amqp_of(
            "[amqp]\nurl = \"amqp://u:p@10.0.0.1:5672/%2f\"\nurls = [\"amqp://u:p@10.0.0.2:5672/%2f\"]\n",
        )
        .expect_err("both set");
        assert!(format!("{error:#}").contains("not both"), "{error:#}");
    }

    #[test]
    fn unreachable_names_every_node_without_passwords() {
        let amqp = amqp_of(
            "[amqp]\nurls = [\"amqp://u:s3cret@10.0.0.1:5672/%2f\", \"amqp://u:s3cret@10.0.0.2:5672/%2f\"]\n",
        )
        .expect("valid");
        let message = unreachable(&amqp);
        assert!(message.contains("10.0.0.2"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
