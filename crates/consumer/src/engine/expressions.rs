//! A webhook's own expressions applied to an event: its filter, which decides whether it
//! is sent the event, and its transform, which makes the body it is sent.

use std::borrow::Cow;

use hookwire_amqp::wire::Task;
use hookwire_core::{FilterInput, Subscription, Transformed};
use tracing::warn;

use super::Engine;
use crate::telemetry;

/// The body an attempt sends, and what the attempt log and a dead letter record of it.
#[derive(Debug)]
pub(super) struct Sent<'a> {
    /// The bytes sent and signed.
    pub(super) bytes: Cow<'a, [u8]>,
    /// Their size and digest, when a transform made them.
    pub(super) transformed: Option<Transformed>,
}

impl Engine {
    /// Whether `sub`'s filter lets the event through. A delivery it stops is counted
    /// (`filtered`, or `filter_error` when the filter fails on this body or reaches its
    /// evaluation budget) and finished without an attempt: it is not a failure of the
    /// receiver, and costs no other webhook anything.
    pub(super) fn passes_filter(&self, sub: &Subscription, input: &FilterInput<'_>) -> bool {
        let Some(filter) = &sub.filter else {
            return true;
        };
        match filter.matches(input) {
            Ok(true) => true,
            Ok(false) => {
                telemetry::delivery("filtered");
                false
            }
            Err(error) if error.budget_exceeded => {
                warn!(subscription_id = %sub.id, %error, "Webhook filter stopped at its evaluation budget on this event; not delivered.");
                telemetry::delivery("filter_error");
                false
            }
            Err(error) => {
                warn!(subscription_id = %sub.id, %error, "Webhook filter failed on this event; not delivered.");
                telemetry::delivery("filter_error");
                false
            }
        }
    }

    /// The body to send `sub` for the task's event `body`: the body itself when it has no
    /// transform (borrowed: nothing is decoded or copied), else its transform's value as
    /// JSON text. `Err` with the reason when the transform gives none: the delivery is
    /// counted as `transform_error` and dead-lettered with that reason, and costs no other
    /// webhook anything. `filter_input`, when the filter read the body, shares its decoding.
    pub(super) fn sent_body<'a>(
        &self,
        sub: &Subscription,
        task: &Task,
        body: &'a [u8],
        filter_input: Option<&FilterInput<'_>>,
    ) -> Result<Sent<'a>, String> {
        let Some(transform) = &sub.transform else {
            return Ok(Sent {
                bytes: Cow::Borrowed(body),
                transformed: None,
            });
        };
        let own;
        let input = match filter_input {
            Some(input) => input,
            None => {
                own = FilterInput::new(&task.event_type, body);
                &own
            }
        };
        match transform.apply(input) {
            Ok(bytes) => Ok(Sent {
                transformed: Some(Transformed::of(&bytes)),
                bytes: Cow::Owned(bytes),
            }),
            Err(error) => {
                if error.budget_exceeded {
                    warn!(subscription_id = %sub.id, event_id = %task.event_id, %error, "Webhook transform stopped at its evaluation budget on this event; dead-lettered.");
                } else {
                    warn!(subscription_id = %sub.id, event_id = %task.event_id, %error, "Webhook transform gave no body for this event; dead-lettered.");
                }
                telemetry::delivery("transform_error");
                Err(format!("the webhook's transform gave no body: {error}"))
            }
        }
    }
}
