//! Settling one message on its own: a passing failure (broker or disk) is retried in the
//! process with backoff, then handed back to its queue; a message that can never be
//! handled is dead-lettered alone. Only an unusable connection or channel ends a session.

use super::*;

/// The first wait before a message whose handler failed for a passing reason is handled
/// again; it doubles up to [`RETRY_MAX_DELAY`].
pub(super) const RETRY_MIN_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two handlings of one message.
pub(super) const RETRY_MAX_DELAY: Duration = Duration::from_secs(30);
/// How long a handler keeps a message it cannot handle yet before it hands it back to its
/// queue. Retrying in the process does not count deliveries against `x-delivery-limit`
/// (a requeue does), and this stays far below the broker's 30-minute consumer timeout.
pub(super) const MAX_HOLD: Duration = Duration::from_secs(300);

/// What a running session tells its handlers.
#[derive(Clone)]
pub(super) struct Signals {
    /// Cancelled by a handler that found the connection or a channel unusable.
    pub(super) broken: CancellationToken,
    /// Cancelled when shutdown begins: a handler waiting to retry hands its message back.
    pub(super) stopping: CancellationToken,
}

/// Handles one message and settles it on its own: a failure of one message never ends
/// the session, unless the broker connection or a channel is unusable.
pub(super) async fn handle(
    engine: Arc<Engine>,
    publisher: Arc<Publisher>,
    acks: Acks,
    signals: Signals,
    source: Source,
    message: Delivery,
) {
    let tag = message.delivery_tag;
    let held_since = tokio::time::Instant::now();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN_DELAY)
        .with_max_delay(RETRY_MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let error = match run_handler(&engine, &publisher, source, &message).await {
            Ok(()) => return acks.finish(tag),
            Err(e) => e,
        };
        let failure = match (error.failure(), source) {
            // A dead letter cannot be dead-lettered again: it waits for the store.
            (Failure::Poison, Source::Dead) => Failure::Transient,
            (failure, _) => failure,
        };
        match failure {
            Failure::ChannelLost => {
                warn!(error = %error, ?source, "Broker channel failed; the session ends and its unacked messages come back.");
                signals.broken.cancel();
                return;
            }
            Failure::Poison => {
                error!(error = %error, ?source, "Message cannot be handled; dead-lettered on its own.");
                match dead_letter_unprocessable(&engine, &publisher, source, &message, &error).await
                {
                    Ok(()) => return acks.finish(tag),
                    Err(e) if e.failure() == Failure::ChannelLost => {
                        signals.broken.cancel();
                        return;
                    }
                    // Not dead-lettered: kept, and tried again like a passing failure.
                    Err(e) => warn!(error = %e, "Cannot dead-letter it yet."),
                }
            }
            Failure::Transient => {}
        }
        if held_since.elapsed() >= MAX_HOLD || signals.stopping.is_cancelled() {
            warn!(error = %error, ?source, held_secs = held_since.elapsed().as_secs(), "Message still cannot be handled; handed back to its queue.");
            return acks.nack(tag, true);
        }
        let delay = delays.next().unwrap_or(RETRY_MAX_DELAY);
        warn!(error = %error, ?source, retry_in_ms = delay.as_millis() as u64, "Message not handled yet; kept and retried.");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = signals.stopping.cancelled() => return acks.nack(tag, true),
            // The session is over: the broker redelivers the message to the next one.
            () = signals.broken.cancelled() => return,
        }
    }
}

/// Runs the handler of `source`; a panic becomes an error, so that its message is settled
/// rather than left unacked until the broker's consumer timeout.
pub(super) async fn run_handler(
    engine: &Engine,
    publisher: &Publisher,
    source: Source,
    message: &Delivery,
) -> Result<()> {
    caught(async {
        match source {
            Source::Events => engine.handle_event(publisher, message).await,
            Source::Tasks => engine.handle_task(publisher, message).await,
            Source::Dead => engine.handle_dead(message).await,
        }
    })
    .await
}

/// `handling`'s result, or [`Error::Panicked`] if it panicked.
pub(super) async fn caught(handling: impl Future<Output = Result<()>>) -> Result<()> {
    match std::panic::AssertUnwindSafe(handling).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Err(Error::Panicked(what))
        }
    }
}

/// Publishes a message that can never be handled to the dead-letter exchange, with the
/// reason [`DeadReason::Unprocessable`] and the error as its detail.
pub(super) async fn dead_letter_unprocessable(
    engine: &Engine,
    publisher: &Publisher,
    source: Source,
    message: &Delivery,
    error: &Error,
) -> Result<()> {
    let detail = error.to_string();
    let reason = DeadReason::Unprocessable;
    let props = match source {
        Source::Events => wire::rejected_event_properties(message, reason, &detail),
        _ => wire::dead_letter_properties(&message.properties, reason, &detail),
    };
    metrics::counter!("hookwire_dead_letters_total", "reason" => reason.as_str()).increment(1);
    publisher
        .publish(
            &engine.topology().names.dead_letter_exchange(),
            hookwire_amqp::topology::DEAD_KEY,
            &message.data,
            props,
        )
        .await?;
    Ok(())
}
