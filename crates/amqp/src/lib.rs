//! hookwire-amqp: hookwire's side of AMQP, and the library Rust applications publish
//! events with.
//!
//! - [`connect`]: one connection, named so operators (and tests) can find it.
//! - [`topology`]: every exchange and queue of a namespace, declared idempotently.
//! - [`Publisher`]: confirmed, `mandatory` publishing, where a nack, a return or a missing
//!   confirm is an error, never a silent drop.
//! - [`Producer`]: publishes events that follow the wire contract.

mod error;
pub mod headers;
mod producer;
mod publisher;
pub mod topology;

pub use error::{Error, Result};
pub use producer::{OutgoingEvent, Producer};
pub use publisher::{Publisher, connect};
pub use topology::{Names, Topology, inspect_queue};

/// Re-exported so that producers need no direct lapin dependency for the basics.
pub use lapin;
