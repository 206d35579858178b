//! hookwire-amqp integration tests against the real broker.

mod connect;
mod deploy;
mod streams;
