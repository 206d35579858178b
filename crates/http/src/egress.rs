//! Where an attempt's TCP connection comes from: straight to the target, or through the
//! operator's proxy (`delivery.proxy`). Either way it goes only to an address the target
//! policy allows: through a proxy, hookwire resolves and checks the target itself and
//! asks the proxy for the checked IP address, never for a name the proxy would resolve.
//! TLS runs inside the tunnel and still names the URL's host.
//!
//! The proxy protocols are hyper-util's (`Tunnel` for HTTP CONNECT, `SocksV5`), the ones
//! reqwest builds on. hookwire opens the TCP connection to the proxy itself, so that a
//! proxy that is down is reported with its cause (hyper-util's SOCKS error drops it).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use hookwire_core::config::{ProxyAddress, ProxyKind};
use hookwire_core::{TargetError, TargetPolicy};
use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::{BoxError, PolicyResolver, error_chain, resolve_allowed_within};

/// The proxy every attempt leaves through.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Where it is and which protocol it speaks.
    pub address: ProxyAddress,
    /// What it asks for, if anything.
    pub credentials: Option<ProxyCredentials>,
}

/// A user name and password for the proxy. `Debug` hides the password.
#[derive(Clone)]
pub struct ProxyCredentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The TCP connection under an attempt: hyper-util's connector with the policy resolver,
/// or a tunnel through the proxy.
#[derive(Debug, Clone)]
pub(crate) enum Egress {
    Direct(HttpConnector<PolicyResolver>),
    Proxied(Arc<Proxied>),
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

impl Service<Uri> for Egress {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Direct(http) => http.poll_ready(cx).map_err(Into::into),
            Self::Proxied(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        match self {
            Self::Direct(http) => {
                let connecting = http.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Self::Proxied(proxied) => {
                let proxied = proxied.clone();
                Box::pin(async move { proxied.connect(dst).await })
            }
        }
    }
}

/// Tunnels through one proxy to policy-checked addresses.
pub(crate) struct Proxied {
    kind: ProxyKind,
    /// `http://host:port` of the proxy: what the TCP connector connects to.
    uri: Uri,
    /// To the proxy, whose address the operator chose: the system resolver, no policy.
    connector: HttpConnector,
    /// HTTP CONNECT's `Proxy-Authorization: Basic …` (marked sensitive).
    basic: Option<HeaderValue>,
    credentials: Option<ProxyCredentials>,
    policy: Arc<TargetPolicy>,
    /// Bounds the target's DNS lookup, as without a proxy.
    timeout: Duration,
}

impl std::fmt::Debug for Proxied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxied")
            .field("kind", &self.kind)
            .field("uri", &self.uri)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Proxied {
    pub(crate) fn new(
        proxy: Proxy,
        policy: Arc<TargetPolicy>,
        timeout: Duration,
    ) -> crate::Result<Self> {
        let config_error =
            |e: &dyn std::fmt::Display| crate::Error::Config(format!("delivery.proxy: {e}"));
        let address = &proxy.address;
        let authority = SocketAddrOrName(&address.host, address.port).to_string();
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| config_error(&e))?;
        let basic = match (&proxy.credentials, address.kind) {
            (Some(c), ProxyKind::HttpConnect) => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password));
                let mut value = HeaderValue::try_from(format!("Basic {token}"))
                    .map_err(|_| config_error(&"the credentials do not fit a header"))?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Ok(Self {
            kind: address.kind,
            uri,
            connector,
            basic,
            credentials: proxy.credentials,
            policy,
            timeout,
        })
    }

    /// Resolves and checks `dst`'s host as a direct connection would, then asks the proxy
    /// for each allowed address in turn until one tunnel opens.
    async fn connect(&self, dst: Uri) -> Result<TokioIo<TcpStream>, BoxError> {
        let host = dst.host().ok_or(TargetError::NoHost)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = dst
            .port_u16()
            .unwrap_or(if dst.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => {
                self.policy.check_addr(ip)?;
                vec![ip]
            }
            Err(_) => resolve_allowed_within(&self.policy, host, self.timeout)
                .await?
                .into_iter()
                .map(|a| a.ip())
                .collect(),
        };
        let mut last = None;
        for ip in addresses {
            match self.tunnel(SocketAddr::new(ip, port)).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Box::new(TargetError::NoHost)))
    }

    /// One tunnel to `target` through a new connection to the proxy. The errors name
    /// the proxy's part but neither its address nor the target's (attempt logs are shown
    /// to organizations; the server's configuration says where the proxy is).
    async fn tunnel(&self, target: SocketAddr) -> Result<TokioIo<TcpStream>, BoxError> {
        let stream = self
            .connector
            .clone()
            .call(self.uri.clone())
            .await
            .map_err(|e| {
                ProxyFailure(format!(
                    "cannot reach the delivery proxy: {}",
                    error_chain(&e)
                ))
            })?;
        let target: Uri = format!("http://{target}/").parse()?;
        let opened = match self.kind {
            ProxyKind::HttpConnect => {
                let mut tunnel = Tunnel::new(self.uri.clone(), Opened(Some(stream)));
                if let Some(basic) = &self.basic {
                    tunnel = tunnel.with_auth(basic.clone());
                }
                tunnel.call(target).await.map_err(|e| error_chain(&e))
            }
            ProxyKind::Socks5 => {
                let mut socks = SocksV5::new(self.uri.clone(), Opened(Some(stream)));
                if let Some(c) = &self.credentials {
                    socks = socks.with_auth(c.username.clone(), c.password.clone());
                }
                socks.call(target).await.map_err(|e| error_chain(&e))
            }
        };
        opened.map_err(|e| {
            Box::new(ProxyFailure(format!(
                "the delivery proxy did not open a tunnel to the target: {e}"
            ))) as BoxError
        })
    }
}

/// `host:port`, with an IPv6 literal in brackets.
struct SocketAddrOrName<'a>(&'a str, u16);

impl std::fmt::Display for SocketAddrOrName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => write!(f, "{}", SocketAddr::new(ip, self.1)),
            Err(_) => write!(f, "{}:{}", self.0, self.1),
        }
    }
}

/// Why no tunnel opened through the proxy: an attempt's connection failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProxyFailure(String);

/// A connector that hands over a connection already open to the proxy: hyper-util's
/// tunnels then only speak their protocol over it.
struct Opened(Option<TokioIo<TcpStream>>);

impl Service<Uri> for Opened {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<TokioIo<TcpStream>, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        std::future::ready(
            self.0
                .take()
                .ok_or_else(|| std::io::Error::other("the proxy connection is in use")),
        )
    }
}
