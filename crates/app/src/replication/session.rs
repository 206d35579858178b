//! A reader's sessions: one connection of its own each, again after a failure, and
//! stopping at an entry this build cannot apply.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookwire_amqp::lapin::Connection;
use hookwire_store::Writer;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::settings::StreamSettings;

/// Stops applying a stream: `/readyz` shows `problem` until the process restarts, and
/// the reader waits for `stop` (a restart reads the stream again from the entry it
/// stopped at).
pub(super) async fn park(
    writer: &Writer,
    problem: String,
    stop: &CancellationToken,
) -> Result<(), String> {
    writer.halt(problem);
    stop.cancelled().await;
    Ok(())
}

/// Reads the `what` stream, `read` once per connection of its own (closed after it,
/// whatever happened), until `read` returns `Ok` (at `stop`); after a failure, again on
/// a new connection, the delay doubling up to `amqp.reconnect_max_delay`.
pub(super) async fn keep_reading<F>(
    settings: &StreamSettings,
    what: &str,
    stop: &CancellationToken,
    mut read: impl FnMut(Arc<Connection>) -> F,
) where
    F: Future<Output = Result<(), String>>,
{
    const FIRST_DELAY: Duration = Duration::from_millis(100);
    let mut delay = FIRST_DELAY;
    let brokers = settings.brokers();
    loop {
        let started = std::time::Instant::now();
        let session = async {
            let name = format!("{} {what} reader", settings.connection_name);
            let connection = Arc::new(brokers.connect(&name).await.map_err(|e| e.to_string())?);
            let result = read(connection.clone()).await;
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                connection.close(200, format!("{what} reader stopped").into()),
            )
            .await;
            result
        };
        match session.await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "Reading the {what} stream failed; reading again.");
                brokers.rotate();
            }
        }
        // A session that lasted ended by a failover, not a failing broker: start the
        // backoff again, so that the node's writes (which wait for their own entry) are
        // not held for up to reconnect_max_delay.
        if started.elapsed() > Duration::from_secs(10) {
            delay = FIRST_DELAY;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(settings.reconnect_max_delay);
    }
}
