//! Delivery engine tests against the real broker and real loopback receivers. Each test
//! runs its own daemon in its own namespace.

mod broken;
mod circuit;
mod delivery;
mod health;
mod https;
mod hygiene;
mod isolation;
mod retry;
mod session;
mod ssrf;
mod topology;
