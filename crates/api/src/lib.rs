//! hookwire-api: the admin API, served by `hookwire serve` next to the delivery engine.
//!
//! - [`webhooks`]: create (after a successful test event), list, get, update, delete,
//!   test and rotate-secret, always scoped to one organization.
//! - [`operations`]: the attempt log, and dead letters with replay and purge.
//! - [`resend`]: resending kept events to a webhook, one or a range.
//! - [`backup`]: the store exported from the running node, streamed (a hot backup).
//! - [`meta`]: the event catalog, `/healthz`, `/readyz` and `/openapi.json`.
//! - [`error`]: the one place errors become `{"error":{"code","message"}}`.
//! - [`auth`]: bearer tokens on `/v1`, compared in constant time, and what each may reach:
//!   operators every route, tokens limited to organizations only theirs.
//! - [`console`]: the web console's files, embedded, at `/console/`.
//! - [`serve`]: the accept loops, which bound what each connection may hold.
//! - [`access`]: access tokens, minted by an operator for one organization and signed,
//!   so any node verifies them without a store lookup.

pub mod access;
pub mod auth;
pub mod backup;
pub mod console;
pub mod error;
mod extract;
pub mod meta;
pub mod operations;
pub mod resend;
mod routes;
mod server;
mod state;
pub mod webhooks;

pub use error::{ApiError, Result};
pub use routes::{ops_router, router};
pub use server::{Listeners, serve};
pub use state::{ApiSettings, ApiState, Circuits, OperatorTokens};
