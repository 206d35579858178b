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
    /// A message's handler panicked; a bug, settled like a message that cannot be handled.
    #[error("the handler panicked: {0}")]
    Panicked(String),
}

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a handler's failure means for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// It may succeed later (a publish refused or unconfirmed, a store write that failed):
    /// the message is kept and handled again after a backoff, never dead-lettered.
    Transient,
    /// The broker connection or a channel is unusable: the session must end.
    ChannelLost,
    /// The message can never be handled (a record it needs cannot be read): it is
    /// dead-lettered on its own, with the reason.
    Poison,
}

impl Error {
    /// How the message whose handler failed with this error is settled.
    pub(crate) fn failure(&self) -> Failure {
        use hookwire_store::Error as S;
        match self {
            Self::Amqp(_) | Self::Broker(hookwire_amqp::Error::Amqp(_)) => Failure::ChannelLost,
            // One record that does not decode, or whose secret does not open: every retry
            // would fail the same way. `Store::open` checks the key, so this is one row.
            Self::Store(S::Corrupt(_) | S::Unseal) | Self::Panicked(_) => Failure::Poison,
            _ => Failure::Transient,
        }
    }
}
