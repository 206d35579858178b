//! The changes stream's reader: every node's changes applied into this node's store, in
//! the stream's order, resuming after the last offset applied.

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use hookwire_amqp::lapin::Connection;
use hookwire_amqp::lapin::options::BasicAckOptions;
use hookwire_amqp::stream;
use hookwire_store::{Entry, Store, Writer};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::guard::{Guard, Verdict};
use super::session::{keep_reading, park};
use super::settings::{StreamSettings, Which};

/// Entries received from the stream and not yet acked: the reader's window.
const PREFETCH: u16 = 256;

/// Applies the changes stream to the store through `writer`, from the entry after the
/// last one applied, until `stop`; reconnects after any failure.
pub(crate) async fn read_changes(
    settings: StreamSettings,
    store: Store,
    writer: Writer,
    stop: CancellationToken,
) {
    keep_reading(&settings, "changes", &stop, |connection| {
        let (settings, store, writer, stop) = (
            settings.clone(),
            store.clone(),
            writer.clone(),
            stop.clone(),
        );
        async move {
            let result = read_entries(&connection, &settings, &store, &writer, &stop).await;
            // Entries handed over and not answered are read again by the next session.
            for _ in 0..writer.replication().map_or(0, |s| s.pending) {
                writer.entry_settled();
            }
            result
        }
    })
    .await;
}

/// Entries are handed to the writer in the stream's order, each let through or refused
/// by the [`Guard`] first, and each is acked (which only returns credit) once applied. At
/// an entry this build does not know, the entries before it are applied, then the reader
/// stops until `stop`.
async fn read_entries(
    connection: &Connection,
    settings: &StreamSettings,
    store: &Store,
    writer: &Writer,
    stop: &CancellationToken,
) -> Result<(), String> {
    Which::Changes
        .declare(settings, connection)
        .await
        .map_err(|e| e.to_string())?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let mut guard = Guard::load(store, "changes", settings.stream(), settings.key.clone())
        .map_err(|e| e.to_string())?;
    let from = store
        .applied_offset()
        .map_err(|e| e.to_string())?
        .map(|n| n.saturating_add(1));
    let mut consumer = stream::consume_from(&channel, &settings.stream(), from, PREFETCH)
        .await
        .map_err(|e| e.to_string())?;
    info!(from = ?from, "Reading the changes stream.");
    let mut in_flight = FuturesOrdered::new();
    let mut halted = None;
    loop {
        if in_flight.is_empty()
            && let Some(problem) = halted.take()
        {
            return park(writer, problem, stop).await;
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = consumer.next(), if halted.is_none() => {
                let delivery = next
                    .ok_or_else(|| "the changes stream's consumer ended".to_owned())?
                    .map_err(|e| e.to_string())?;
                let offset = stream::offset(delivery.properties.headers().as_ref())
                    .ok_or_else(|| "a delivery of the changes stream carries no offset".to_owned())?;
                if from.is_some_and(|from| offset < from) {
                    // A resumed read starts at its chunk's first entry.
                    delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    continue;
                }
                let (answer, origin) = match guard.admit(&delivery.data, offset) {
                    Verdict::Apply { body, origin } => {
                        // An authentic entry that does not decode was written by a newer
                        // build (a new kind of change): skipping it would diverge.
                        if origin.is_some() && let Err(e) = Entry::from_bytes(body) {
                            let what = format!("a schema this build does not know ({e})");
                            halted = Some(guard.halt(offset, &what));
                            continue;
                        }
                        (writer.apply_entry(body, offset), origin)
                    }
                    Verdict::Refuse => (writer.skip_entry(offset), None),
                    Verdict::Halt(problem) => {
                        halted = Some(problem);
                        continue;
                    }
                };
                let acker = delivery.acker;
                in_flight.push_back(async move { (answer.await, acker, origin) });
            }
            Some((answered, acker, origin)) = in_flight.next(), if !in_flight.is_empty() => {
                writer.entry_settled();
                match answered {
                    Ok(Ok(())) => {
                        guard.applied(store, origin.as_ref()).map_err(|e| e.to_string())?;
                        acker
                            .ack(BasicAckOptions::default())
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(Err(e)) => return Err(format!("an entry could not be applied: {e}")),
                    Err(_) => return Err("the store writer has stopped".to_owned()),
                }
                if let Some(status) = writer.replication() {
                    crate::telemetry::replication(&status);
                }
            }
        }
    }
}
