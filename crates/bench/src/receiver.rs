//! The webhook receiver: hyper's HTTP/1 server on loopback, answering at once, on its own
//! named threads so that its CPU time can be read apart from the rest of the bench.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::tally::{Mode, Tally, parse_run_and_seq};

/// The name of every receiver thread (`/proc/self/task/*/comm`).
pub const THREAD_NAME: &str = "hw-receiver";
/// The path of the OTLP/HTTP span sink beside the webhooks: answered 200, counted apart.
const OTLP_TRACES: &str = "/v1/traces";

/// The most requests the receiver holds while it waits to answer them (a slow or an
/// overloaded receiver); past it they wait to be read. So a slow receiver's capacity is
/// this many per answer time.
pub const MAX_HELD: usize = 4096;

/// A running receiver. Webhook `k` of a scenario is `http://ADDR/k`.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    tally: Arc<RwLock<Arc<Tally>>>,
    otlp_requests: Arc<AtomicU64>,
    load: Arc<Load>,
}

/// The webhook requests the receiver holds now (read, not yet answered) and the most it
/// held since the last reset.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU64,
    peak: AtomicU64,
    held: tokio::sync::Semaphore,
}

impl Load {
    /// Requests held now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The most held since [`Load::reset_peak`].
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Starts a new peak.
    pub fn reset_peak(&self) {
        self.peak.store(self.in_flight(), Ordering::Relaxed);
    }

    /// Counts one more request held; the number held, this one included.
    fn enter(self: &Arc<Self>) -> (u64, Held) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        (now, Held(self.clone()))
    }
}

/// One request held; counted out when dropped (answered, or its connection gone).
struct Held(Arc<Load>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Receiver {
    /// Starts the receiver on `threads` threads of its own.
    pub fn start(threads: usize) -> Result<Self> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("receiver: bind 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let idle = Tally::new(0, 1, Mode::Ok, std::time::Instant::now());
        let tally = Arc::new(RwLock::new(Arc::new(idle)));
        let runtime = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(THREAD_NAME)
                .enable_all()
                .build()?
        };
        let shared = tally.clone();
        let otlp_requests = Arc::new(AtomicU64::new(0));
        let otlp = otlp_requests.clone();
        let load = Arc::new(Load {
            in_flight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            held: tokio::sync::Semaphore::new(MAX_HELD),
        });
        let shared_load = load.clone();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || runtime.block_on(accept_loop(listener, shared, otlp, shared_load)))
            .context("receiver thread")?;
        Ok(Self {
            addr,
            tally,
            otlp_requests,
            load,
        })
    }

    /// The requests it holds.
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    /// The base URL of the OTLP/HTTP span sink (`tracing.otlp_endpoint`).
    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Span exports received so far.
    pub fn otlp_requests(&self) -> u64 {
        self.otlp_requests.load(Ordering::Relaxed)
    }

    /// The URL of subscriber `k`.
    pub fn url(&self, k: usize) -> String {
        format!("http://{}/{k}", self.addr)
    }

    /// Counts the next requests in `tally`.
    pub fn count_into(&self, tally: Arc<Tally>) {
        *self
            .tally
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tally;
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    tally: Arc<RwLock<Arc<Tally>>>,
    otlp: Arc<AtomicU64>,
    load: Arc<Load>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("receiver: {e}");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (tally, otlp, load) = (tally.clone(), otlp.clone(), load.clone());
        tokio::spawn(async move {
            let service =
                service_fn(move |req| answer(tally.clone(), otlp.clone(), load.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    tally: Arc<RwLock<Arc<Tally>>>,
    otlp: Arc<AtomicU64>,
    load: Arc<Load>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    if req.uri().path() == OTLP_TRACES {
        let _ = req.into_body().collect().await;
        otlp.fetch_add(1, Ordering::Relaxed);
        return Ok(Response::new(Empty::new()));
    }
    let k = req.uri().path().trim_start_matches('/').parse::<usize>();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let tally = tally
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let (in_flight, _held) = load.enter();
    let delay = match tally.overload().map(|o| o.answer(in_flight)) {
        Some(None) => {
            tally.reject();
            let mut response = Response::new(Empty::new());
            *response.status_mut() = hyper::StatusCode::TOO_MANY_REQUESTS;
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("1"),
            );
            return Ok(response);
        }
        Some(Some(delay)) => delay,
        None => tally.answer_delay(),
    };
    let status = match (k, body.as_deref().ok().and_then(parse_run_and_seq)) {
        (Ok(k), Some((run, seq))) => tally.on_request(run, seq, k),
        // Counted as a stray (an index no scenario uses); 200 so it is never retried.
        _ => tally.on_request(0, usize::MAX, 0),
    };
    if !delay.is_zero() {
        // Never closed: acquire fails only then.
        let _slot = load.held.acquire().await;
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Empty::new());
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    Ok(response)
}
