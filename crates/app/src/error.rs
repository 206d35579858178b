//! Why hookwire cannot be assembled or stopped running.

use std::path::PathBuf;

/// What went wrong while building or running the process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// `catalog.path` cannot be read or parsed.
    #[error("catalog.path: {0}")]
    Catalog(String),
    /// The store cannot be opened.
    #[error("cannot open the store at {}: {source}", path.display())]
    Store {
        /// `store.path`.
        path: PathBuf,
        /// Why.
        source: hookwire_store::Error,
    },
    /// The settled journal beside the store cannot be opened.
    #[error("cannot open the settled journal in {}: {source}", path.display())]
    Journal {
        /// `store.path`.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Flushing the store at shutdown failed.
    #[error("cannot flush the store: {0}")]
    Flush(hookwire_store::Error),
    /// The HTTP client cannot be built (`delivery.ca_file`…).
    #[error(transparent)]
    Http(#[from] hookwire_http::Error),
    /// The delivery engine ended with an error, e.g. a refusal to start.
    #[error(transparent)]
    Daemon(#[from] hookwire_consumer::Error),
    /// The API cannot listen on `api.listen` or `api.ops_listen`.
    #[error("config key `{key}`: cannot listen on {addr}: {source}")]
    Listen {
        /// `api.listen` or `api.ops_listen`.
        key: &'static str,
        /// Its value.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The admin API failed while serving.
    #[error("the admin API failed: {0}")]
    Api(std::io::Error),
    /// The metrics recorder cannot be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    /// A task of the process panicked; a bug.
    #[error("internal: {0}")]
    Internal(String),
}

/// The result type of hookwire-app.
pub type Result<T, E = Error> = std::result::Result<T, E>;
