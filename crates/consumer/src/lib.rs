//! hookwire-consumer: the delivery engine.
//!
//! - [`Daemon`]: keeps a broker session alive and consumes the events and deliveries queues.
//! - [`Engine`]: per message, decode, fan out, attempt, then retry through a tier,
//!   dead-letter, or finish, acking only once the outcome is durable.
//! - [`endpoints`]: per-webhook concurrency caps, rate limits and circuit breakers.

mod acks;
pub mod attempt_log;
mod batch_writer;
mod daemon;
mod dead;
pub mod endpoints;
mod engine;
mod error;
pub mod payloads;
mod settled;
pub mod spans;
mod telemetry;

pub use daemon::{AmqpSettings, Daemon};
pub use endpoints::{CircuitLimits, CircuitSnapshot, CircuitState, EndpointLimits, Endpoints};
pub use engine::{Engine, EngineParts, EngineSettings};
pub use error::{Error, Result};
pub use settled::SettledJournal;
