//! Errors of the pure core: bad catalogs, secrets and configuration.

/// What went wrong in hookwire-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event catalog is not valid TOML or breaks a catalog rule.
    #[error("event catalog: {0}")]
    Catalog(String),
    /// A signing secret is not `whsec_` followed by base64.
    #[error("invalid signing secret: {0}")]
    Secret(String),
    /// A signature did not verify.
    #[error("signature mismatch: {0}")]
    Signature(String),
    /// The retry schedule is empty or has an out-of-range delay.
    #[error("retry schedule: {0}")]
    RetrySchedule(String),
    /// A configuration key has an invalid value; `key` names it in dotted form.
    #[error("config key `{key}`: {message}")]
    Config {
        /// The dotted key, e.g. `delivery.timeout`.
        key: String,
        /// Why the value is refused.
        message: String,
    },
}

/// The result type of hookwire-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
