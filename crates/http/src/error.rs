//! Errors of building the HTTP client.

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TLS settings cannot work (`delivery.ca_file`).
    #[error("config: {0}")]
    Config(String),
}

/// The result type of hookwire-http.
pub type Result<T, E = Error> = std::result::Result<T, E>;
