//! Errors of the delivery engine.

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Publishing or declaring failed; the message stays unacked and comes back.
    #[error(transparent)]
    Broker(#[from] hookwire_amqp::Error),
    /// The broker connection or a channel failed.
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] hookwire_store::Error),
    /// The configuration cannot work.
    #[error("config: {0}")]
    Config(String),
    /// A background task died; a bug, not an input problem.
    #[error("internal: {0}")]
    Internal(String),
    /// Opening a broker session took longer than `amqp.open_timeout`.
    #[error("the broker session did not open within {0:?}")]
    SessionTimeout(std::time::Duration),
    /// `serve` must not start (another daemon consumes the namespace…).
    #[error("{0}")]
    Refused(String),
}

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
