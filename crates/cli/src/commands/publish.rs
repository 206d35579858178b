//! `hookwire publish`: one event, checked against the catalog, confirmed by the broker.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hookwire_amqp::{OutgoingEvent, Producer};

use crate::config;

/// The event to publish, and the configuration that names the broker and the catalog.
#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// The organization that owns the event.
    #[arg(long)]
    org: String,
    /// The event type, e.g. report_run_completed.
    #[arg(long = "event-type", alias = "event", value_name = "TYPE")]
    event: String,
    /// The event's fields as a JSON object, e.g. '{"report_run_url":"https://…"}'.
    #[arg(long)]
    data: String,
    /// The event's unique id; a UUIDv7 when omitted.
    #[arg(long = "event-id", alias = "id", value_name = "ID")]
    id: Option<String>,
    /// Print `{"event_id": …}` instead of the bare id.
    #[arg(long)]
    json: bool,
}

/// Publishes the event and prints its id.
pub async fn run(args: PublishArgs) -> Result<()> {
    let PublishArgs {
        config,
        org,
        event,
        data,
        id,
        json,
    } = args;
    let figment = config::layers(config.as_deref())?;
    let amqp = config::amqp_section(&figment, None)?;
    let catalog = hookwire_app::catalog(&config::extract(&figment, "catalog")?)?;
    let data = match serde_json::from_str(&data).context("--data is not JSON")? {
        serde_json::Value::Object(map) => map,
        _ => bail!("--data must be a JSON object"),
    };
    let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let event = OutgoingEvent {
        org,
        event_type: event,
        id: id.clone(),
        data,
    };
    let producer = Producer::connect_any_with(
        config::brokers(&amqp)?,
        &amqp.namespace,
        &format!("{}@publish", amqp.connection_name),
        catalog,
        amqp.confirm_timeout,
    )
    .await
    .with_context(|| config::unreachable(&amqp))?;
    producer.publish(&event).await?;
    producer.close().await?;
    if json {
        println!("{}", serde_json::json!({ "event_id": id }));
    } else {
        println!("{id}");
    }
    Ok(())
}
