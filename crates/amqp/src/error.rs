//! Errors of AMQP publishing and declaration.

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker URL cannot be parsed.
    #[error("AMQP URL: {0}")]
    Url(String),
    /// The TLS settings toward the broker cannot work (`amqp.tls_*`).
    #[error("broker TLS: {0}")]
    Tls(String),
    /// The broker connection or channel failed.
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused the message (nack): it was not stored.
    #[error("the broker nacked the publish to `{exchange}` with key `{routing_key}`")]
    Nacked {
        /// Where it was sent.
        exchange: String,
        /// Its routing key.
        routing_key: String,
    },
    /// The broker returned a `mandatory` message: no queue was bound for it.
    #[error(
        "the broker returned the publish to `{exchange}` with key `{routing_key}` as unroutable: {reply}"
    )]
    Returned {
        /// Where it was sent.
        exchange: String,
        /// Its routing key.
        routing_key: String,
        /// The broker's reply text.
        reply: String,
    },
    /// No confirm arrived in time; the message may or may not be stored.
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(std::time::Duration),
    /// The event breaks the wire contract; it was not published.
    #[error("event refused before publishing: {0}")]
    Contract(String),
    /// A dead letter lacks what a replay needs.
    #[error("{0}")]
    Unreplayable(String),
}

/// The result type of the producer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
