//! A scriptable HTTP receiver on loopback. It records every request, counts TCP accepts
//! (the proof that a refused target got no connection), and answers what the test says.
//! [`crate::tls`] adds the same receiver behind TLS.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Lower-case header names to values.
    pub headers: HashMap<String, String>,
    /// The exact body bytes.
    pub body: Bytes,
    /// The request path.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// A plain answer with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

type Responder = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

/// Hears of each answer once it is handed to the connection: the request's number, the
/// request and the status.
type Observer = dyn Fn(usize, &Recorded, u16) + Send + Sync;

/// What the receiver saw: every request as it arrived, and which ones it answered.
#[derive(Default)]
struct Log {
    requests: Mutex<Vec<Recorded>>,
    /// Indexes into `requests` whose answer was handed to the connection, and when.
    answered: Mutex<Vec<(usize, Instant)>>,
    /// With an observer nothing is kept: requests are only counted, and the observer
    /// keeps what it needs.
    observer: Option<Arc<Observer>>,
    count: AtomicUsize,
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    url: String,
    log: Arc<Log>,
    accepts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("url", &self.url).finish()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Answers `status` until `fixed` is set, then 200: a receiver that is mended later
    /// (one switch may mend several).
    pub async fn until_fixed(status: u16, fixed: &Arc<AtomicBool>) -> Self {
        let fixed = fixed.clone();
        Self::start(move |_, _| {
            Reply::status(if fixed.load(Ordering::SeqCst) {
                200
            } else {
                status
            })
        })
        .await
    }

    /// A receiver that answers 200 to everything.
    pub async fn ok() -> Self {
        Self::start(|_, _| Reply::status(200)).await
    }

    /// Holds its first `held` requests open for a minute, then answers 200 at once: a
    /// slow subscriber that keeps that many events unacked.
    pub async fn holding_first(held: usize) -> Self {
        Self::start(move |n, _| Reply {
            delay: if n < held {
                Duration::from_secs(60)
            } else {
                Duration::ZERO
            },
            ..Reply::status(200)
        })
        .await
    }

    /// Answers 500 to the first request of each delivery (`webhook-id`) and 200 to the
    /// rest: every delivery needs a retry.
    pub async fn failing_each_first_attempt() -> Self {
        let seen = Mutex::new(std::collections::HashSet::new());
        Self::start(move |_, r| {
            let first = seen
                .lock()
                .expect("lock")
                .insert(r.header("webhook-id").to_owned());
            Reply::status(if first { 500 } else { 200 })
        })
        .await
    }

    /// A receiver whose answer to the `n`th request (from 0) is `respond(n, request)`.
    pub async fn start(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        Self::serve(listener, Arc::new(respond), None, None)
    }

    /// Like [`Receiver::start`], but keeps no log: `answered` hears of each answer instead,
    /// and [`Receiver::requests`] and [`Receiver::answered`] stay empty. For long runs
    /// (the chaos runner's soak), where a copy of every request would grow without bound.
    pub async fn start_unlogged(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
        answered: impl Fn(usize, &Recorded, u16) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        Self::serve(listener, Arc::new(respond), None, Some(Arc::new(answered)))
    }

    /// Accepts on `listener`; with `tls`, each connection does the TLS handshake first
    /// (see [`crate::tls`]), and one that fails it is counted as an accept but records
    /// no request.
    pub(crate) fn serve(
        listener: TcpListener,
        respond: Arc<Responder>,
        tls: Option<TlsAcceptor>,
        observer: Option<Arc<Observer>>,
    ) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let url = match tls {
            // The served certificate names `localhost`, which loopback-only mode allows.
            Some(_) => format!("https://localhost:{}/hook", addr.port()),
            None => format!("http://{addr}/hook"),
        };
        let log = Arc::new(Log {
            observer,
            ..Log::default()
        });
        let accepts = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (requests, accepts) = (log.clone(), accepts.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepts.fetch_add(1, Ordering::SeqCst);
                    let (requests, respond, tls) = (requests.clone(), respond.clone(), tls.clone());
                    tokio::spawn(async move {
                        match tls {
                            None => serve_connection(stream, requests, respond).await,
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    serve_connection(stream, requests, respond).await;
                                }
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            url,
            log,
            accepts,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/hook`, or `https://localhost:PORT/hook` when it serves TLS.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.requests.lock().expect("lock").clone()
    }

    /// The requests whose answer was sent, in the order they were answered.
    pub fn answered(&self) -> Vec<Recorded> {
        let requests = self.log.requests.lock().expect("lock");
        self.log
            .answered
            .lock()
            .expect("lock")
            .iter()
            .map(|(n, _)| requests[*n].clone())
            .collect()
    }

    /// Requests open during `from..to`: arrived before `to`, and not answered before
    /// `from`. A redelivery after a disturbance in that window can repeat at most these
    /// without hookwire having had their answers.
    pub fn open_during(&self, from: Instant, to: Instant) -> usize {
        let requests = self.log.requests.lock().expect("lock");
        let answered: HashMap<usize, Instant> = self
            .log
            .answered
            .lock()
            .expect("lock")
            .iter()
            .copied()
            .collect();
        (0..requests.len())
            .filter(|n| requests[*n].at < to && answered.get(n).is_none_or(|at| *at >= from))
            .count()
    }

    /// TCP connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        crate::eventually(
            timeout,
            &format!("{n} requests at {}", self.url()),
            || async {
                let all = self.requests();
                (all.len() >= n).then_some(all)
            },
        )
        .await
    }
}

/// Serves HTTP/1.1 on one connection, plain or TLS, recording each request and answering
/// what `respond` says.
async fn serve_connection<S>(stream: S, requests: Arc<Log>, respond: Arc<Responder>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (requests, respond) = (requests.clone(), respond.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let recorded = Recorded {
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body,
                path: parts.uri.path().to_owned(),
                at: Instant::now(),
            };
            let n = if requests.observer.is_some() {
                requests.count.fetch_add(1, Ordering::SeqCst)
            } else {
                let mut all = requests.requests.lock().expect("lock");
                all.push(recorded.clone());
                all.len() - 1
            };
            let reply = respond(n, &recorded);
            tokio::time::sleep(reply.delay).await;
            let mut response = hyper::Response::builder().status(reply.status);
            for (k, v) in &reply.headers {
                response = response.header(k, v);
            }
            match &requests.observer {
                Some(observer) => observer(n, &recorded, reply.status),
                None => requests
                    .answered
                    .lock()
                    .expect("lock")
                    .push((n, Instant::now())),
            }
            Ok::<_, Infallible>(
                response
                    .body(Full::new(Bytes::from_static(b"ok")))
                    .expect("response"),
            )
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
