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

/// The brokers of `[amqp]`, with its TLS settings read from their files.
pub fn brokers(amqp: &AmqpConfig) -> Result<hookwire_amqp::Brokers> {
    Ok(hookwire_amqp::Brokers::of_config(amqp)?)
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

    /// The repository's root, where the shipped files are.
    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_shipped_config_files_load_and_validate_as_serve_loads_them() {
        for file in [
            "config/dev.toml",
            "deploy/hookwire.toml",
            "deploy/cluster/hookwire.toml",
        ] {
            let figment = layers(Some(&root().join(file))).expect(file);
            let mut config: hookwire_core::Config =
                extract(&figment, "").unwrap_or_else(|e| panic!("{file}: {e:#}"));
            // The deployment files leave the key to the env file.
            if config.secrets.key.is_empty() {
                config.secrets.key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into();
            }
            config.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    /// The `HOOKWIRE_<SECTION>__<KEY>` names in `text`.
    fn env_names(text: &str) -> Vec<&str> {
        text.match_indices("HOOKWIRE_")
            .map(|(at, _)| {
                let len = text[at..]
                    .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(text.len() - at);
                text[at..at + len].trim_end_matches('_')
            })
            .filter(|name| name.contains("__"))
            .collect()
    }

    #[test]
    fn every_environment_variable_the_shipped_files_name_is_a_key_the_loader_takes() {
        let mut files = vec![root().join("README.md")];
        for dir in ["config", "deploy", "deploy/cluster", "docs"] {
            for entry in std::fs::read_dir(root().join(dir)).expect(dir) {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    files.push(path);
                }
            }
        }
        let mut checked = 0;
        for file in &files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for name in env_names(&text) {
                // As figment's Env provider reads it: lower case, `__` between levels.
                let key = name["HOOKWIRE_".len()..].to_lowercase().replace("__", ".");
                let shown = file.display();
                assert!(
                    !RENAMED_KEYS.iter().any(|(old, _)| *old == key),
                    "{shown} names {name}, the refused key {key}"
                );
                let figment = Figment::from(Toml::string(DEFAULT_CONFIG_TOML))
                    .merge(Serialized::default(&key, "x"));
                // A value of the wrong type is fine here; an unknown key is not.
                if let Err(errors) = figment.extract::<hookwire_core::Config>() {
                    for e in errors {
                        assert!(
                            !matches!(e.kind, figment::error::Kind::UnknownField(..)),
                            "{shown} names {name}, which is no key: {e}"
                        );
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} names found in {files:?}");
        assert_eq!(
            env_names("HOOKWIRE_DELIVERY__TIMEOUT_SECS=30 and HOOKWIRE_API_URL"),
            ["HOOKWIRE_DELIVERY__TIMEOUT_SECS"]
        );
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
