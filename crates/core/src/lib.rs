//! hookwire-core: everything hookwire knows that needs neither network nor disk.
//!
//! - [`catalog`]: the event types producers may publish, and the fields each carries.
//! - [`event`]: the wire contract, decoding an AMQP message into an [`Event`] or a
//!   [`Rejection`] with its dead-letter reason.
//! - [`signing`]: Standard Webhooks secrets and `v1` signatures.
//! - [`retry`]: the retry schedule, and the plan of every broker tier.
//! - [`retry_policy`]: a webhook's own, shorter retry schedule and age limit.
//! - [`outcome`]: what an HTTP attempt's result means for the delivery.
//! - [`disposition`]: what becomes of a task after an attempt, or instead of one.
//! - [`target`]: which target URLs and addresses hookwire may connect to.
//! - [`subscription`]: a webhook subscription.
//! - [`client_tls`]: a webhook's client certificate and CA bundle.
//! - [`config`]: the configuration tree and its validation.
//! - [`keys`]: the keys derived from `secrets.key`, one per use.
//! - [`trace`]: W3C Trace Context, from the producer to the webhook request.
//! - [`transform`]: a webhook's CEL expression that makes the body it is sent.

pub mod catalog;
pub mod client_tls;
pub mod config;
pub mod custom_headers;
pub mod disposition;
pub mod error;
pub mod event;
pub mod filter;
pub mod keys;
pub mod outcome;
pub mod retry;
pub mod retry_policy;
pub mod signing;
pub mod subscription;
pub mod target;
pub mod trace;
pub mod transform;

pub use catalog::{Catalog, EventType};
pub use client_tls::ClientTls;
pub use config::Config;
pub use custom_headers::CustomHeader;
pub use disposition::{DeliveryRules, Disposition};
pub use error::{Error, Result};
pub use event::{DeadReason, Event, OrgHeader, RawEvent, Rejection};
pub use filter::{Filter, FilterError, FilterInput};
pub use outcome::{AttemptFailure, Outcome};
pub use retry::{RetryPlan, RetrySchedule};
pub use retry_policy::RetryPolicy;
pub use signing::{Ed25519Key, PublicKey, Secret};
pub use subscription::{AsymmetricKey, SigningKey, Subscription};
pub use target::{TargetError, TargetPolicy};
pub use transform::{Transform, TransformError, Transformed};

/// The `user-agent` hookwire sends with every attempt.
pub const USER_AGENT: &str = concat!("hookwire/", env!("CARGO_PKG_VERSION"));

/// Milliseconds since the Unix epoch, the one clock format hookwire stores and sends.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
