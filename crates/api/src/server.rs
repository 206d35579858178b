//! The accept loops. axum's own `serve` sets no timer, so a client that connects and sends
//! nothing would hold a connection forever; these loops bound every connection's cost:
//!
//! - at most `api.max_connections` connections at once (further ones wait in the listen
//!   backlog), so the API never uses up the descriptors deliveries need;
//! - a connection with no request in progress for `api.header_read_timeout` is closed,
//!   whatever it is doing meanwhile: silent after connecting, trickling a request head,
//!   sending only the HTTP/2 preface, or idle between kept-alive requests;
//! - at most [`MAX_STREAMS_PER_CONNECTION`] requests at once on one HTTP/2 connection;
//! - an answer streamed after its handler returned (a store export) keeps its connection
//!   busy while its body moves, and lets it go idle once the client stops reading.
//!
//! With `api.ops_listen` set, `/healthz`, `/readyz` and `/metrics` have a listener of
//! their own, so health checks and scrapes answer however busy the API port is.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::backup::StreamedBody;
use crate::routes::{ops_router, router};
use crate::state::ApiState;

/// Where the API listens: the API port, and optionally the operations port.
#[derive(Debug)]
pub struct Listeners {
    /// `api.listen`: every route.
    pub api: TcpListener,
    /// `api.ops_listen`: `/healthz`, and `/readyz` and `/metrics`, which the API port
    /// then no longer serves.
    pub ops: Option<TcpListener>,
}

/// Connections the operations port holds at once: a few health checkers and scrapers.
const OPS_MAX_CONNECTIONS: usize = 32;

/// Requests in progress at once on one HTTP/2 connection; with `api.max_connections`
/// it bounds the requests in progress on the API port.
const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// How long a connection asked to close may take to finish what it is sending.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What one listener allows each connection.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    /// The longest a connection may go without a request in progress.
    idle: Duration,
}

/// Serves the API (and the operations port, if any) until `shutdown` completes, then
/// lets open requests finish.
pub async fn serve(
    listeners: Listeners,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let idle = state.config.header_read_timeout;
    let api_limits = Limits {
        max_connections: state.config.max_connections,
        idle,
    };
    let ops_limits = Limits {
        max_connections: OPS_MAX_CONNECTIONS,
        idle,
    };
    let ops_router = ops_router(state.clone());
    let (router, _) = router(state);
    let (stop_tx, stop_rx) = watch::channel(false);
    let api = accept(listeners.api, router, api_limits, stop_rx.clone());
    let ops = async {
        if let Some(listener) = listeners.ops {
            accept(listener, ops_router, ops_limits, stop_rx.clone()).await;
        }
    };
    let stop = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    tokio::join!(stop, api, ops);
    Ok(())
}

/// Accepts connections on `listener` until `stop`, then waits for the open ones to end.
async fn accept(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection task holds a receiver; `closed()` resolves when the last is gone.
    let (done_tx, done_rx) = watch::channel(());
    loop {
        let permit = tokio::select! {
            () = stopped(&mut stop) => break,
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
        };
        let (stream, _) = tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "The API cannot accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, stop, done) = (router.clone(), stop.clone(), done_rx.clone());
        tokio::spawn(async move {
            serve_connection(stream, router, limits.idle, stop).await;
            drop((permit, done));
        });
    }
    drop(listener);
    drop(done_rx);
    done_tx.closed().await;
}

/// Serves one connection until the client closes it, it stays idle for `idle`, or `stop`.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::default());
    let service = Tracked {
        inner: TowerToHyperService::new(router),
        activity: activity.clone(),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "An API connection ended with an error.");
            }
            return;
        }
        () = stopped(&mut stop) => {}
        () = activity.idle_for(idle) => {
            tracing::debug!("An API connection was idle too long; closing it.");
        }
    }
    // Requests in progress finish; the connection takes no new ones.
    connection.as_mut().graceful_shutdown();
    let grace = async {
        tokio::time::sleep(CLOSE_GRACE).await;
        activity.idle_for(CLOSE_GRACE).await;
    };
    tokio::select! {
        _ = connection => {}
        () = grace => {}
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Whether a connection has requests in progress, and since when it has had none.
#[derive(Debug)]
struct Activity {
    in_progress: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_progress: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        InProgress(self.clone())
    }

    /// A streamed body moved: the idle clock starts again from now.
    fn touch(&self) {
        *self.idle_since.lock().expect("not poisoned") = Instant::now();
    }

    /// Resolves once the connection has had no request in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let wake = {
                let idle_since = self.idle_since.lock().expect("not poisoned");
                if self.in_progress.load(Ordering::SeqCst) > 0 {
                    Instant::now() + limit
                } else if *idle_since + limit <= Instant::now() {
                    return;
                } else {
                    *idle_since + limit
                }
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One request in progress; its end restarts the connection's idle clock.
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut idle_since = self.0.idle_since.lock().expect("not poisoned");
        if self.0.in_progress.fetch_sub(1, Ordering::SeqCst) == 1 {
            *idle_since = Instant::now();
        }
    }
}

/// A service that counts its requests in progress in an [`Activity`].
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R, Response = axum::response::Response>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        let in_progress = self.activity.begin();
        let activity = self.activity.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(in_progress);
            answer.map(|response| {
                if response.extensions().get::<StreamedBody>().is_none() {
                    return response;
                }
                // Each chunk taken restarts the idle clock: a client reading keeps the
                // connection, one that stops reading loses it after `idle`.
                response.map(|body| {
                    let chunks = body.into_data_stream().inspect(move |_| activity.touch());
                    axum::body::Body::from_stream(chunks)
                })
            })
        })
    }
}
