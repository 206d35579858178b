//! A hot backup: the store's webhooks and dead letters as the JSON lines of
//! `hookwire store export`, read from the live store while `serve` delivers.
//!
//! The export is read on a blocking thread of its own and streamed: what it holds at once
//! is one record and a few chunks in flight ([`CHUNK_BYTES`] × [`CHUNKS_IN_FLIGHT`]), not
//! the store. sled reads take no lock that writers wait on, so deliveries and API writes
//! go on meanwhile. One export runs on a node at a time.
//!
//! Consistency: each record is read whole, at one of its versions, but the export is not
//! a point-in-time view of the store: sled's iterators see writes made while they run, so
//! a webhook or dead letter created, changed or removed during the export may or may not
//! be in it, or be there at its old version.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hookwire_store::Store;
use tokio::sync::mpsc;

use crate::error::{ApiError, ErrorBody, Result};
use crate::state::ApiState;

/// The media type of the answer: one JSON document a line.
pub const NDJSON: &str = "application/x-ndjson";

/// Lines are sent in chunks of about this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks read ahead of the client.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Marks an answer whose body outlasts its handler: the connection counts as busy while
/// the body moves, and idle once it stalls (crate::server).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamedBody;

/// The store's webhooks and dead letters as JSON lines, one entry of the changes stream
/// each, their secrets sealed under `secrets.key`: what `hookwire store export` writes,
/// taken from the running node. `hookwire store restore` (one node) and `hookwire store
/// import` (a replicated namespace) read it. Not a point-in-time view: a webhook or dead
/// letter written during the export may or may not be in it. One export at a time.
#[utoipa::path(get, path = "/v1/admin/store/export", tag = "operations", security(("bearer" = [])),
    responses(
        (status = 200, content_type = "application/x-ndjson", body = String,
            description = "One entry a line, webhooks first, then dead letters"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Another export is running on this node")))]
pub async fn export(State(state): State<ApiState>) -> Result<Response> {
    let permit =
        state
            .exports
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyRequests {
                code: "export_running",
                message: "another export is running on this node: try again once it is done".into(),
                retry_after: std::time::Duration::from_secs(10),
            })?;
    let (chunks, received) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let failure = Arc::new(Mutex::new(None));
    let store = state.store.clone();
    let node = state.config.node.clone();
    let failed = failure.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if let Err(e) = produce(&store, &node, &chunks) {
            tracing::error!(error = %e, "A store export failed; its answer is cut short.");
            *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        }
    });
    let body =
        futures_util::stream::unfold((received, failure), |(mut received, failure)| async move {
            match received.recv().await {
                Some(chunk) => Some((Ok(chunk), (received, failure))),
                // A failure ends the body with an error, never cleanly: a client must not
                // take a cut export for a whole one.
                None => failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .map(|why| (Err(std::io::Error::other(why)), (received, failure.clone()))),
            }
        });
    let mut response = (
        [
            (header::CONTENT_TYPE, NDJSON),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(body),
    )
        .into_response();
    response.extensions_mut().insert(StreamedBody);
    tracing::info!("A store export started.");
    Ok(response)
}

/// Reads the export into `chunks` until it ends, the client goes away (not an error) or
/// the store fails.
fn produce(store: &Store, node: &str, chunks: &mpsc::Sender<Bytes>) -> Result<(), String> {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES);
    let (mut webhooks, mut dead_letters) = (0usize, 0usize);
    for entry in store.export_entries(uuid::Uuid::now_v7(), node) {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.kind() == "upsert" {
            webhooks += 1;
        } else {
            dead_letters += 1;
        }
        chunk.extend_from_slice(&entry.to_bytes().map_err(|e| e.to_string())?);
        chunk.push(b'\n');
        if chunk.len() >= CHUNK_BYTES {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
            if chunks.blocking_send(full.into()).is_err() {
                tracing::info!("A store export ended: its client went away.");
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() && chunks.blocking_send(chunk.into()).is_err() {
        return Ok(());
    }
    tracing::info!(webhooks, dead_letters, "A store export finished.");
    Ok(())
}
