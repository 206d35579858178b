//! Confirmed publishing: every publish is `mandatory` and waits for its confirm.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::tcp::{AMQPUriTcpExt, TLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::{BrokerTls, Error, Result};

/// Opens a connection whose name (`rabbitmqctl list_connections name`) is `name`.
///
/// Dropped before the connection opened (by a timeout around it, say), it shuts the
/// socket down: lapin has no handshake timeout and no way to stop a connection that never
/// opened, so its I/O thread would otherwise wait on a silent peer for as long as the
/// peer keeps the socket open (on Unix; elsewhere the socket is left to lapin).
pub async fn connect(url: &str, name: &str) -> Result<Connection> {
    connect_with_frame_max(url, name, None).await
}

/// [`connect`], asking for frames of at most `frame_max` bytes (at least 4,096) when
/// given. lapin keeps a receive and a send buffer of 32 frames per connection, so the
/// broker's default of 128 KiB costs 8 MiB each: a connection that carries only
/// hookwire's own messages can ask for less. Not for one that consumes what producers
/// publish: a message's header frame cannot be split, and one larger than the frame size
/// would close the connection.
pub async fn connect_with_frame_max(
    url: &str,
    name: &str,
    frame_max: Option<u32>,
) -> Result<Connection> {
    connect_with(url, name, frame_max, None).await
}

/// [`connect_with_frame_max`], with `tls`'s CA, client certificate and server name for
/// an `amqps://` URL (the platform's defaults without it; a plain URL ignores it).
pub async fn connect_with(
    url: &str,
    name: &str,
    frame_max: Option<u32>,
    tls: Option<&BrokerTls>,
) -> Result<Connection> {
    let mut uri: AMQPUri = url.parse().map_err(Error::Url)?;
    if let Some(frame_max) = frame_max {
        uri.query.frame_max = Some(uri.query.frame_max.map_or(frame_max, |f| f.min(frame_max)));
    }
    let tls = tls.cloned();
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let runtime = lapin::runtime::default_runtime()?;
    let opening = Opening::default();
    let socket = opening.socket.clone();
    let connection = Connection::connector(
        uri,
        runtime,
        async move |uri, runtime| {
            let stream = match &tls {
                Some(tls) if uri.scheme == AMQPScheme::AMQPS => {
                    // TCP as for a plain URL, then the handshake with hookwire's settings,
                    // which lapin's own TLS setup cannot carry (the server name, a CA
                    // instead of the platform's roots).
                    let mut plain = uri.clone();
                    plain.scheme = AMQPScheme::AMQP;
                    plain
                        .connect_with_config_async(TLSConfig::default(), &runtime)
                        .await?
                        .into_rustls(tls.connector(), tls.server_name(&uri.authority.host))
                        .await?
                }
                _ => {
                    uri.connect_with_config_async(TLSConfig::default(), &runtime)
                        .await?
                }
            };
            // A duplicate of the socket's descriptor: shutting it down ends the socket
            // lapin's I/O thread reads, whatever that thread is doing.
            #[cfg(unix)]
            {
                use lapin::tcp::AsyncTcpStream;
                use std::os::fd::AsFd;
                let duplicate = match &stream {
                    AsyncTcpStream::Plain(s) => s.get_ref().as_fd().try_clone_to_owned().ok(),
                    AsyncTcpStream::Rustls(s) => {
                        s.get_ref().0.get_ref().as_fd().try_clone_to_owned().ok()
                    }
                    _ => None,
                };
                *socket.lock().unwrap_or_else(|e| e.into_inner()) = duplicate;
            }
            #[cfg(not(unix))]
            let _ = &socket;
            Ok(stream)
        },
        properties,
    )
    .await?;
    opening.opened();
    Ok(connection)
}

#[cfg(unix)]
type Socket = std::os::fd::OwnedFd;
#[cfg(not(unix))]
type Socket = std::convert::Infallible;

/// The socket of a connection being opened, shut down if the opening is abandoned.
#[derive(Debug, Default)]
struct Opening {
    socket: Arc<Mutex<Option<Socket>>>,
}

impl Opening {
    /// The connection opened: lapin owns the socket from now on.
    fn opened(&self) {
        self.socket.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(fd) = self.socket.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::net::TcpStream::from(fd).shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A channel in confirm mode. Clones share the channel; lapin pipelines their publishes.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
}

impl Publisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection, confirm_timeout: Duration) -> Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            confirm_timeout,
        })
    }

    /// The underlying channel, for declarations.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes and waits for the confirm. `Ok` means the broker stored the message in
    /// at least one queue.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        self.send(exchange, routing_key, body, properties)
            .await?
            .await
    }

    /// Hands the message to the channel, and returns its confirm to wait for: messages
    /// sent one after another on one channel reach a queue in that order, whenever their
    /// confirms are awaited.
    pub async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?;
        let confirm_timeout = self.confirm_timeout;
        let (exchange, routing_key) = (exchange.to_owned(), routing_key.to_owned());
        Ok(async move {
            let confirmation = tokio::time::timeout(confirm_timeout, confirm)
                .await
                .map_err(|_| Error::ConfirmTimeout(confirm_timeout))??;
            match confirmation {
                // lapin reports a returned mandatory message as an ack that carries it.
                Confirmation::Ack(Some(returned)) => Err(Error::Returned {
                    exchange,
                    routing_key,
                    reply: returned.reply_text.to_string(),
                }),
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Nack(_) | Confirmation::NotRequested => Err(Error::Nacked {
                    exchange,
                    routing_key,
                }),
            }
        })
    }
}
