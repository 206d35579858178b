//! `hookwire event-types`: the catalog's event types, from the admin API.

use anyhow::Result;

use crate::api_flags::ApiArgs;
use crate::output::{print_json, print_table};

/// Lists the event types webhooks can subscribe to.
pub async fn run(api: &ApiArgs) -> Result<()> {
    let reply = api.client()?.event_types().await?;
    if api.json {
        print_json(&reply.raw);
        return Ok(());
    }
    let empty = Vec::new();
    let types = reply.value["event_types"].as_array().unwrap_or(&empty);
    let rows = types
        .iter()
        .map(|t| {
            let fields: Vec<&str> = t["fields"]
                .as_array()
                .map(|f| f.iter().filter_map(serde_json::Value::as_str).collect())
                .unwrap_or_default();
            vec![
                t["name"].as_str().unwrap_or_default().to_owned(),
                fields.join(","),
                t["description"].as_str().unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    print_table(&["NAME", "FIELDS", "DESCRIPTION"], rows);
    Ok(())
}
