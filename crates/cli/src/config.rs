//! Configuration layers: the embedded defaults, then `--config FILE`, then the environment
//! (`HOOKWIRE_<SECTION>__<KEY>`); and what the commands read from them.

use std::path::Path;

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use hookwire_core::config::{AmqpConfig, DEFAULT_CONFIG_TOML, RENAMED_KEYS};
use serde::de::DeserializeOwned;

/// The layered configuration, not yet extracted.
pub fn layers(file: Option<&Path>) -> Result<Figment> {
    let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG_TOML));
    if let Some(file) = file {
        // figment skips a missing file silently; a typo in --config must not.
        if !file.is_file() {
            bail!("config file {} does not exist", file.display());
        }
        figment = figment.merge(Toml::file(file));
    }
    // Only variables with `__` are config, so the CLI's HOOKWIRE_API_URL and
    // HOOKWIRE_API_TOKEN never reach `serve`'s configuration.
    let figment = figment.merge(
        Env::prefixed("HOOKWIRE_")
            .filter(|key| key.as_str().contains("__"))
            .split("__"),
    );
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
