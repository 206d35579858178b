//! Raw-TCP receivers on loopback that misbehave on purpose: huge or endless bodies, heads
//! or bodies trickled a byte at a time. Each writes its bytes by hand, so nothing in an
//! HTTP library smooths the misbehaviour over.
//!
//! A [`RawReceiver`] listens on `127.0.0.1` and, when the machine has IPv6, on `[::1]` at
//! the same port, so a URL naming `localhost` reaches it whichever address the name
//! resolves to. It counts TCP accepts on both (the proof that a refused target got no
//! connection), the bytes it managed to write, and whether a write failed because the
//! client had closed the connection.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long a receiver goes on writing at most, so that a client that never closes makes
/// its test fail instead of hang.
const WRITE_BUDGET: Duration = Duration::from_secs(30);
/// The most an endless body or head writes, for the same reason.
const WRITE_LIMIT_BYTES: u64 = 256 << 20;
/// The send buffer of each connection (the kernel may round it up).
const SEND_BUFFER_BYTES: u32 = 32 << 10;
/// The request head a receiver reads at most before giving up on the request.
const MAX_REQUEST_HEAD_BYTES: usize = 64 << 10;

/// What a [`RawReceiver`] does once it has read a request.
#[derive(Debug, Clone)]
pub enum Misbehaviour {
    /// A complete response: `status`, a `content-length` and `body`. Well behaved, except
    /// that the body may be as large (or as far from UTF-8) as the test likes.
    Answer {
        /// HTTP status.
        status: u16,
        /// Extra headers, written as given.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// The status line and headers of a 200, one byte every `every`.
    TrickleHead {
        /// The pause before each byte.
        every: Duration,
    },
    /// A complete 200 head announcing `len` bytes, then the body one byte every `every`.
    TrickleBody {
        /// The pause before each body byte.
        every: Duration,
        /// The announced `content-length`.
        len: usize,
    },
    /// A 200 with a chunked body that never ends, written as fast as the socket takes it.
    EndlessBody,
    /// A status line followed by header lines that never end.
    EndlessHead,
}

/// What a [`RawReceiver`] observed.
#[derive(Debug, Default)]
struct Stats {
    accepts: AtomicUsize,
    bytes_written: AtomicU64,
    write_failed: AtomicBool,
}

/// A misbehaving receiver; it stops when dropped.
#[derive(Debug)]
pub struct RawReceiver {
    port: u16,
    stats: Arc<Stats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RawReceiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RawReceiver {
    /// A receiver that answers a plain, complete `200 ok`.
    pub async fn ok() -> Self {
        Self::start(Misbehaviour::Answer {
            status: 200,
            headers: Vec::new(),
            body: b"ok".to_vec(),
        })
        .await
    }

    /// Starts a receiver that does `behaviour` on every connection.
    pub async fn start(behaviour: Misbehaviour) -> Self {
        let listeners = bind_loopback_pair().await;
        let port = listeners[0].local_addr().expect("local addr").port();
        let stats = Arc::new(Stats::default());
        let behaviour = Arc::new(behaviour);
        let tasks = listeners
            .into_iter()
            .map(|listener| {
                let (stats, behaviour) = (stats.clone(), behaviour.clone());
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        stats.accepts.fetch_add(1, Ordering::SeqCst);
                        let (stats, behaviour) = (stats.clone(), behaviour.clone());
                        tokio::spawn(async move {
                            let _ = serve(stream, &behaviour, &stats).await;
                        });
                    }
                })
            })
            .collect();
        Self { port, stats, tasks }
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        self.url_with_host("127.0.0.1")
    }

    /// `http://HOST:PORT/hook`, e.g. with `localhost` or `[::1]`.
    pub fn url_with_host(&self, host: &str) -> String {
        format!("http://{host}:{}/hook", self.port)
    }

    /// The port it listens on, on every loopback address it has.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// TCP connections accepted so far, on any of its addresses.
    pub fn accepts(&self) -> usize {
        self.stats.accepts.load(Ordering::SeqCst)
    }

    /// Bytes of response written into the socket so far, over every connection.
    pub fn bytes_written(&self) -> u64 {
        self.stats.bytes_written.load(Ordering::SeqCst)
    }

    /// Waits until a write failed because the client closed the connection; false if
    /// that did not happen within `timeout`.
    pub async fn wait_client_closed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.stats.write_failed.load(Ordering::SeqCst) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// A listener on 127.0.0.1 and, if the machine has IPv6, one on [::1] at the same port.
async fn bind_loopback_pair() -> Vec<TcpListener> {
    for _ in 0..20 {
        let v4 = listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind a loopback port");
        let port = v4.local_addr().expect("local addr").port();
        match listen(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
            Ok(v6) => return vec![v4, v6],
            // Taken on ::1 by someone else: try another port.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            // No IPv6 on this machine: nothing can reach [::1] either.
            Err(_) => return vec![v4],
        }
    }
    panic!("found no port free on both 127.0.0.1 and [::1] in 20 tries");
}

/// A listener whose connections have a small send buffer, so that what a receiver has
/// written says how much the client took in, not how much the kernel would buffer.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_send_buffer_size(SEND_BUFFER_BYTES)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// Reads one request (its head, and its body by `content-length`), then misbehaves.
async fn serve(
    mut stream: TcpStream,
    behaviour: &Misbehaviour,
    stats: &Stats,
) -> std::io::Result<()> {
    read_request(&mut stream).await?;
    let mut out = Writer {
        stream,
        stats,
        deadline: tokio::time::Instant::now() + WRITE_BUDGET,
    };
    match behaviour {
        Misbehaviour::Answer {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            out.write(head.as_bytes()).await?;
            out.write(body).await?;
            out.stream.shutdown().await
        }
        Misbehaviour::TrickleHead { every } => {
            let head =
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-padding: trickle-trickle\r\n\r\nok";
            for byte in head {
                tokio::time::sleep(*every).await;
                out.write(std::slice::from_ref(byte)).await?;
            }
            Ok(())
        }
        Misbehaviour::TrickleBody { every, len } => {
            out.write(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes())
                .await?;
            for _ in 0..*len {
                tokio::time::sleep(*every).await;
                out.write(b"x").await?;
            }
            Ok(())
        }
        Misbehaviour::EndlessBody => {
            out.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            let mut chunk = b"4000\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b'a', 0x4000));
            chunk.extend_from_slice(b"\r\n");
            loop {
                out.write(&chunk).await?;
            }
        }
        Misbehaviour::EndlessHead => {
            out.write(b"HTTP/1.1 200 OK\r\n").await?;
            let line = format!("x-endless: {}\r\n", "h".repeat(1000));
            loop {
                out.write(line.as_bytes()).await?;
            }
        }
    }
}

/// Writes, counting bytes, and records a write that failed because the client went away.
struct Writer<'a> {
    stream: TcpStream,
    stats: &'a Stats,
    deadline: tokio::time::Instant,
}

impl Writer<'_> {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if tokio::time::Instant::now() >= self.deadline
            || self.stats.bytes_written.load(Ordering::SeqCst) >= WRITE_LIMIT_BYTES
        {
            return Err(std::io::Error::other("write budget spent"));
        }
        let written = tokio::time::timeout_at(self.deadline, self.stream.write_all(bytes)).await;
        match written {
            Ok(Ok(())) => {
                self.stats
                    .bytes_written
                    .fetch_add(bytes.len() as u64, Ordering::SeqCst);
                Ok(())
            }
            Ok(Err(e)) => {
                self.stats.write_failed.store(true, Ordering::SeqCst);
                Err(e)
            }
            Err(_) => Err(std::io::Error::other("write budget spent")),
        }
    }
}

/// Reads up to the end of the request's head, then `content-length` bytes of body.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_REQUEST_HEAD_BYTES {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = stream.read(&mut piece).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&piece[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body_len: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < body_len {
        let n = stream.read(&mut piece).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
