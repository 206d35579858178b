//! The nodes of a RabbitMQ cluster a client may connect to: it starts at a random one,
//! so that clients spread over the cluster, and moves on to the next when its node fails.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::Connection;
use tracing::warn;

use hookwire_core::config::AmqpConfig;

use crate::{BrokerTls, Error, Result};

/// Broker URLs and the one to try next. Clones share the position.
#[derive(Clone)]
pub struct Brokers {
    urls: Arc<[String]>,
    next: Arc<AtomicUsize>,
    frame_max: Option<u32>,
    tls: Option<BrokerTls>,
}

impl std::fmt::Debug for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brokers")
            .field(
                "urls",
                &self.urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("next", &self.next.load(Ordering::Relaxed))
            .field("frame_max", &self.frame_max)
            .field("tls", &self.tls)
            .finish()
    }
}

fn redact(url: &str) -> String {
    hookwire_core::config::redact_url(url)
}

impl Brokers {
    /// The nodes at `urls`, starting at a random one.
    pub fn new(urls: Vec<String>) -> Self {
        let start = match urls.len() {
            0 | 1 => 0,
            // Seeded per process by the standard library: random enough to spread clients.
            n => {
                (std::collections::hash_map::RandomState::new().hash_one(std::process::id())
                    as usize)
                    % n
            }
        };
        Self::starting_at(urls, start)
    }

    /// The nodes at `urls`, starting at the `start`th (modulo their number).
    pub fn starting_at(urls: Vec<String>, start: usize) -> Self {
        let start = start.checked_rem(urls.len()).unwrap_or(0);
        Self {
            urls: urls.into(),
            next: Arc::new(AtomicUsize::new(start)),
            frame_max: None,
            tls: None,
        }
    }

    /// The brokers of `[amqp]`: its URLs, with the TLS settings of `amqp.tls_*` (read
    /// from their files now; errors name the key).
    pub fn of_config(amqp: &AmqpConfig) -> Result<Self> {
        Ok(Self::new(amqp.broker_urls()).with_tls(BrokerTls::from_config(amqp)?))
    }

    /// Connections to `amqps://` URLs opened from now on use `tls` (the platform's
    /// defaults when `None`).
    #[must_use]
    pub fn with_tls(mut self, tls: Option<BrokerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The TLS settings of these brokers' connections, if any.
    pub fn tls(&self) -> Option<&BrokerTls> {
        self.tls.as_ref()
    }

    /// Connections opened from now on ask for frames of at most `frame_max` bytes: see
    /// [`crate::connect_with_frame_max`] for when that is safe.
    #[must_use]
    pub fn with_frame_max(mut self, frame_max: u32) -> Self {
        self.frame_max = Some(frame_max);
        self
    }

    /// One broker.
    pub fn one(url: &str) -> Self {
        Self::starting_at(vec![url.to_owned()], 0)
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The node tried first by the next [`Brokers::connect`].
    pub fn current(&self) -> &str {
        self.urls
            .get(self.next.load(Ordering::Relaxed) % self.urls.len().max(1))
            .map_or("", String::as_str)
    }

    /// `host:port` of [`Brokers::current`], without credentials: for logs and metrics.
    pub fn current_address(&self) -> String {
        address(self.current())
    }

    /// Moves on to the next node: after a session on the current one failed.
    pub fn rotate(&self) {
        let n = self.urls.len().max(1);
        let _ = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |i| Some((i + 1) % n));
    }

    /// Connects to the current node or, failing that, to each next one in turn; the node
    /// that answered stays current. The error is the last node's. Cancelled (by a timeout
    /// around it), it leaves the node it was trying current, for the caller to rotate.
    pub async fn connect(&self, name: &str) -> Result<Connection> {
        let n = self.urls.len();
        if n == 0 {
            return Err(Error::Url("no broker URL".into()));
        }
        let start = self.next.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in 0..n {
            let k = (start + i) % n;
            self.next.store(k, Ordering::Relaxed);
            match crate::connect_with(&self.urls[k], name, self.frame_max, self.tls.as_ref()).await
            {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    if n > 1 {
                        warn!(broker = %redact(&self.urls[k]), error = %e, "Broker node unreachable; trying the next.");
                    }
                    last = Some(e);
                }
            }
        }
        // All failed: the next round starts one node further on.
        self.next.store((start + 1) % n, Ordering::Relaxed);
        Err(last.unwrap_or_else(|| Error::Url("no broker URL".into())))
    }
}

/// `host:port` of `url`, or `?` for a URL that does not parse.
pub fn address(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>().map_or_else(
        |_| "?".to_owned(),
        |u| format!("{}:{}", u.authority.host, u.authority.port),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        (1..=3)
            .map(|i| format!("amqp://u:secret@127.0.0.1:568{i}/%2f"))
            .collect()
    }

    #[test]
    fn rotation_visits_every_node_in_turn_and_wraps() {
        let b = Brokers::starting_at(nodes(), 1);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(b.current_address());
            b.rotate();
        }
        assert_eq!(
            seen,
            [
                "127.0.0.1:5682",
                "127.0.0.1:5683",
                "127.0.0.1:5681",
                "127.0.0.1:5682"
            ]
        );
    }

    #[test]
    fn clones_share_the_position() {
        let b = Brokers::starting_at(nodes(), 0);
        let c = b.clone();
        c.rotate();
        assert_eq!(b.current_address(), "127.0.0.1:5682");
    }

    #[test]
    fn the_start_is_within_the_list_and_one_url_never_moves() {
        for _ in 0..20 {
            let b = Brokers::new(nodes());
            assert!(nodes().iter().any(|u| u == b.current()));
        }
        let one = Brokers::one("amqp://u:p@127.0.0.1:5672/%2f");
        one.rotate();
        assert_eq!(one.current_address(), "127.0.0.1:5672");
        assert_eq!(
            Brokers::starting_at(nodes(), 7).current_address(),
            "127.0.0.1:5682"
        );
    }

    #[test]
    fn debug_hides_passwords() {
        let shown = format!("{:?}", Brokers::new(nodes()));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("5683"), "{shown}");
    }

    #[tokio::test]
    async fn connect_moves_past_unreachable_nodes_and_fails_over_none() {
        // Ports nothing listens on: every node refuses, the error is reported, and the
        // next round starts one node further on.
        let closed: Vec<String> = (0..3)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let port = l.local_addr().expect("addr").port();
                format!("amqp://u:p@127.0.0.1:{port}/%2f")
            })
            .collect();
        let b = Brokers::starting_at(closed.clone(), 0);
        b.connect("hookwire-test")
            .await
            .expect_err("nothing listens");
        assert_eq!(b.current(), closed[1]);
        let empty = Brokers::new(Vec::new());
        assert!(matches!(empty.connect("x").await, Err(Error::Url(_))));
    }
}
