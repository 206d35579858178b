//! The configuration's `Debug` output, which may end up in a log or a panic message.

use hookwire_core::Config;

#[test]
fn debug_output_shows_no_secret() {
    let key = "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk=";
    let token = "token-that-must-not-leak-0123";
    let password = "broker-password-that-must-not-leak";
    let mut config = Config::defaults();
    config.secrets.key = key.into();
    config.api.tokens = vec![token.into()];
    config.amqp.url = format!("amqp://hookwire:{password}@127.0.0.1:5672/%2f");
    config.validate().expect("a valid config");

    for text in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!text.contains(key), "the secrets key leaks: {text}");
        assert!(!text.contains("c2VjcmV0"), "part of the key leaks: {text}");
        assert!(!text.contains(token), "a token leaks: {text}");
        assert!(!text.contains(password), "the password leaks: {text}");
        // The rest is still there to debug with.
        assert!(
            text.contains("amqp://hookwire:***@127.0.0.1:5672"),
            "{text}"
        );
        assert!(text.contains("max_body_bytes"), "{text}");
    }
}

#[test]
fn the_dev_config_is_valid() {
    // config/dev.toml over the defaults, as `tests/dev` runs it.
    let text = include_str!("../../../../config/dev.toml");
    let dev: toml::Table = toml::from_str(text).expect("dev.toml parses");
    let mut merged: toml::Table =
        toml::from_str(hookwire_core::config::DEFAULT_CONFIG_TOML).expect("defaults parse");
    for (section, values) in dev {
        let target = merged
            .get_mut(&section)
            .and_then(toml::Value::as_table_mut)
            .expect("a known section");
        for (k, v) in values.as_table().expect("a section").clone() {
            target.insert(k, v);
        }
    }
    let config: Config = merged.try_into().expect("dev.toml has known keys");
    config.validate().expect("dev.toml is valid");
}
