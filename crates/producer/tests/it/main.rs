//! hookwire-producer integration tests against the real broker.

mod connect;
mod deploy;
