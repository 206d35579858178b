//! Confirmed publishing: every publish is `mandatory` and waits for its confirm.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::{Error, Result};

/// Opens a connection whose name (`rabbitmqctl list_connections name`) is `name`.
pub async fn connect(url: &str, name: &str) -> Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url, properties).await?)
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
        let confirmation = tokio::time::timeout(self.confirm_timeout, confirm)
            .await
            .map_err(|_| Error::ConfirmTimeout(self.confirm_timeout))??;
        match confirmation {
            // lapin reports a returned mandatory message as an ack that carries it.
            Confirmation::Ack(Some(returned)) => Err(Error::Returned {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
                reply: returned.reply_text.to_string(),
            }),
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Nack(_) | Confirmation::NotRequested => Err(Error::Nacked {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
        }
    }
}
