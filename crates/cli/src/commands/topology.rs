//! `hookwire topology`: declares or deletes a namespace's exchanges and queues.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use hookwire_amqp::Topology;
use hookwire_core::config::DeliveryConfig;

use crate::config;

#[derive(Subcommand, Debug)]
pub enum TopologyAction {
    /// Declare every exchange and queue (idempotent).
    Declare {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides amqp.namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete every exchange and queue of the namespace, messages included.
    Delete {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides amqp.namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `topology` subcommand and prints what it did.
pub async fn run(action: TopologyAction) -> Result<()> {
    let (config, namespace, delete, json) = match action {
        TopologyAction::Declare {
            config,
            namespace,
            json,
        } => (config, namespace, false, json),
        TopologyAction::Delete {
            config,
            namespace,
            json,
        } => (config, namespace, true, json),
    };
    let figment = config::layers(config.as_deref())?;
    let amqp = config::amqp_section(&figment, namespace)?;
    let delivery: DeliveryConfig = config::extract(&figment, "delivery")?;
    let mut topology = Topology::of_plan(&amqp.namespace, &delivery.retry_plan()?);
    topology.replication = amqp.replication();
    let connection = config::brokers(&amqp)?
        .connect("hookwire-topology")
        .await
        .with_context(|| config::unreachable(&amqp))?;
    let channel = connection.create_channel().await?;
    if delete {
        topology.delete(&channel).await?;
        if json {
            println!("{}", serde_json::json!({ "deleted": amqp.namespace }));
        } else {
            println!("deleted namespace {}", amqp.namespace);
        }
    } else {
        topology.declare(&channel).await?;
        if json {
            let declared = serde_json::json!({
                "declared": amqp.namespace,
                "retry_tiers": topology.tiers.len(),
            });
            println!("{declared}");
        } else {
            println!(
                "declared namespace {} ({} retry tiers)",
                amqp.namespace,
                topology.tiers.len()
            );
        }
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}
