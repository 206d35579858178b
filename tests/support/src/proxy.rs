//! Egress proxies on loopback: an HTTP CONNECT proxy and a SOCKS5 one. Each counts the
//! connections that reach it and records the targets it is asked for, so that a test can
//! prove that every request went through it, and that a refused target never reached it.
//!
//! They relay only to loopback IP literals: a host name (which hookwire never sends) or
//! any other address is recorded and refused, so nothing leaves the machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hookwire_core::config::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which protocol the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// HTTP `CONNECT host:port`.
    HttpConnect,
    /// SOCKS5 `CONNECT`, with the user/password method when credentials are set.
    Socks5,
}

/// What reached the proxy.
#[derive(Debug, Default)]
struct Seen {
    connections: AtomicUsize,
    /// Targets asked for after authentication, as the client wrote them.
    targets: Mutex<Vec<String>>,
    /// Targets a tunnel was opened to.
    tunnels: Mutex<Vec<SocketAddr>>,
    /// Handshakes refused for missing or wrong credentials.
    refused_credentials: AtomicUsize,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    protocol: ProxyProtocol,
    credentials: Option<(String, String)>,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// A proxy speaking `protocol` on `127.0.0.1`, requiring `credentials` (user name,
    /// password) when given.
    pub async fn start(protocol: ProxyProtocol, credentials: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn({
            let (seen, credentials) = (seen.clone(), credentials.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    seen.connections.fetch_add(1, Ordering::SeqCst);
                    let (seen, credentials) = (seen.clone(), credentials.clone());
                    tokio::spawn(async move {
                        let _ = match protocol {
                            ProxyProtocol::HttpConnect => {
                                http_connect(client, &seen, credentials.as_ref()).await
                            }
                            ProxyProtocol::Socks5 => {
                                socks5(client, &seen, credentials.as_ref()).await
                            }
                        };
                    });
                }
            }
        });
        Self {
            addr,
            protocol,
            credentials,
            seen,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` or `socks5://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match self.protocol {
            ProxyProtocol::HttpConnect => format!("http://{}", self.addr),
            ProxyProtocol::Socks5 => format!("socks5://{}", self.addr),
        }
    }

    /// `delivery.proxy` for this proxy, with its credentials inline.
    pub fn config(&self) -> ProxyConfig {
        ProxyConfig {
            url: self.url(),
            username: self.credentials.as_ref().map(|(u, _)| u.clone()),
            password: self.credentials.as_ref().map(|(_, p)| p.clone()),
            password_file: None,
        }
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// The targets asked for (after authentication), as the client wrote them.
    pub fn targets(&self) -> Vec<String> {
        self.seen.targets.lock().expect("lock").clone()
    }

    /// The targets a tunnel was opened to.
    pub fn tunnels(&self) -> Vec<SocketAddr> {
        self.seen.tunnels.lock().expect("lock").clone()
    }

    /// Handshakes refused for missing or wrong credentials.
    pub fn refused_credentials(&self) -> usize {
        self.seen.refused_credentials.load(Ordering::SeqCst)
    }
}

/// The target, when it is a loopback IP literal and port.
fn loopback_target(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .ok()
        .filter(|a| a.ip().is_loopback())
}

/// Connects to `target` and relays both ways until either side closes.
async fn relay(mut client: TcpStream, mut upstream: TcpStream, seen: &Seen, target: SocketAddr) {
    seen.tunnels.lock().expect("lock").push(target);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

async fn http_connect(
    mut client: TcpStream,
    seen: &Seen,
    credentials: Option<&(String, String)>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing after the head (the client's TLS hello) is read here.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut words = request.split(' ');
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        return client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
    };
    if let Some((user, password)) = credentials {
        let expected = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let given = lines.find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("proxy-authorization")
                .then(|| value.trim().to_owned())
        });
        // The scheme is case-insensitive (RFC 9110, 11.1), the token is not.
        let matches = given.is_some_and(|g| {
            g.len() == expected.len()
                && g[..6].eq_ignore_ascii_case("basic ")
                && g[6..] == expected[6..]
        });
        if !matches {
            seen.refused_credentials.fetch_add(1, Ordering::SeqCst);
            return client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")
                .await;
        }
    }
    seen.targets.lock().expect("lock").push(target.to_owned());
    let Some(addr) = loopback_target(target) else {
        return client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
    };
    let Ok(upstream) = TcpStream::connect(addr).await else {
        return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    relay(client, upstream, seen, addr).await;
    Ok(())
}

/// RFC 1928 with RFC 1929's user/password method.
async fn socks5(
    mut client: TcpStream,
    seen: &Seen,
    credentials: Option<&(String, String)>,
) -> std::io::Result<()> {
    const NO_AUTH: u8 = 0x00;
    const USER_PASSWORD: u8 = 0x02;
    const NO_ACCEPTABLE: u8 = 0xff;
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting).await?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    client.read_exact(&mut methods).await?;
    if greeting[0] != 5 {
        return Ok(());
    }
    let wanted = if credentials.is_some() {
        USER_PASSWORD
    } else {
        NO_AUTH
    };
    if !methods.contains(&wanted) {
        if credentials.is_some() {
            seen.refused_credentials.fetch_add(1, Ordering::SeqCst);
        }
        return client.write_all(&[5, NO_ACCEPTABLE]).await;
    }
    client.write_all(&[5, wanted]).await?;
    if let Some((user, password)) = credentials {
        let mut version_and_len = [0u8; 2];
        client.read_exact(&mut version_and_len).await?;
        let mut given_user = vec![0u8; usize::from(version_and_len[1])];
        client.read_exact(&mut given_user).await?;
        let mut len = [0u8; 1];
        client.read_exact(&mut len).await?;
        let mut given_password = vec![0u8; usize::from(len[0])];
        client.read_exact(&mut given_password).await?;
        if given_user != user.as_bytes() || given_password != password.as_bytes() {
            seen.refused_credentials.fetch_add(1, Ordering::SeqCst);
            return client.write_all(&[1, 1]).await;
        }
        client.write_all(&[1, 0]).await?;
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let ip = match request[3] {
        1 => {
            let mut octets = [0u8; 4];
            client.read_exact(&mut octets).await?;
            Some(IpAddr::from(Ipv4Addr::from(octets)))
        }
        4 => {
            let mut octets = [0u8; 16];
            client.read_exact(&mut octets).await?;
            Some(IpAddr::from(Ipv6Addr::from(octets)))
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).await?;
            seen.targets
                .lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&name).into_owned());
            None
        }
        _ => return Ok(()),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    // Replies: 0 succeeded, 2 not allowed by the ruleset, 5 refused, 8 address type not
    // supported (a name: this proxy never resolves one).
    let reply = |code: u8| [5, code, 0, 1, 0, 0, 0, 0, 0, 0];
    let Some(ip) = ip else {
        return client.write_all(&reply(8)).await;
    };
    if request[1] != 1 {
        return client.write_all(&reply(7)).await;
    }
    let target = SocketAddr::new(ip, port);
    seen.targets.lock().expect("lock").push(target.to_string());
    if !ip.is_loopback() {
        return client.write_all(&reply(2)).await;
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return client.write_all(&reply(5)).await;
    };
    client.write_all(&reply(0)).await?;
    relay(client, upstream, seen, target).await;
    Ok(())
}
