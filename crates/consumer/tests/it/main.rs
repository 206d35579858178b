//! Delivery engine tests against the real broker and real loopback receivers. Each test
//! runs its own daemon in its own namespace.

mod adaptive;
mod broken;
mod broken_row;
mod circuit;
mod delivery;
mod fanout;
mod health;
mod hostile;
mod https;
mod hygiene;
mod isolation;
mod mtls;
mod poison;
mod proxy;
mod retry;
mod retry_policy;
mod session;
mod ssrf;
mod topology;
mod traces;
