//! hookwire-amqp: hookwire's side of AMQP, and the library Rust applications publish
//! events with.
//!
//! - [`connect`]: one connection, named so operators (and tests) can find it.
//! - [`Brokers`]: the nodes of a cluster, connected to in turn until one answers.
//! - [`BrokerTls`]: a private CA, a client certificate and a server name for `amqps://`.
//! - [`topology`]: every exchange and queue of a namespace, declared idempotently.
//! - [`Publisher`]: confirmed, `mandatory` publishing, where a nack, a return or a missing
//!   confirm is an error, never a silent drop.
//! - [`wire`]: every message hookwire writes or reads on the broker: events, tasks, dead
//!   letters, operational events, replays.
//! - [`Producer`]: publishes events that follow the wire contract.
//! - [`Replayer`]: publishes dead letters back.
//! - [`stream`]: the changes stream: declared, read from an offset, offsets of deliveries.
//! - [`envelope`]: what every entry and batch of a replication stream travels in: its
//!   writer, its place in that writer's sequence, and a MAC.

mod brokers;
pub mod envelope;
mod error;
pub mod headers;
mod inequivalent;
mod producer;
mod publisher;
mod replayer;
pub mod stream;
mod tls;
pub mod topology;
pub mod wire;

pub use brokers::{Brokers, address};
pub use error::{Error, Result};
pub use producer::Producer;
pub use publisher::{Publisher, connect, connect_with, connect_with_frame_max};
pub use replayer::Replayer;
pub use tls::{BrokerTls, BrokerTlsPem};
pub use topology::{ChangesStream, Names, StreamBounds, Topology, inspect_queue};
pub use wire::OutgoingEvent;

/// Re-exported so that producers need no direct lapin dependency for the basics.
pub use lapin;
