//! `webhooks resend`: one kept event, or every page of a range, sent again.

use anyhow::Result;

use crate::api_flags::ApiArgs;
use crate::output::{print_json_value, print_table};

/// One event, or every page of a range, resent; prints what was queued and skipped.
pub(super) async fn resend(
    api: &ApiArgs,
    client: &crate::client::ApiClient,
    org: &str,
    id: &str,
    event: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> Result<()> {
    let mut all = hookwire_api::resend::ResendResult {
        queued: Vec::new(),
        skipped: Vec::new(),
        next_cursor: None,
    };
    let mut cursor: Option<String> = None;
    // Only a range takes long: its pages, and the waits the resend budget imposes.
    let progress = crate::progress::bar(None, "events resent", api.json || event.is_some());
    loop {
        let selection = match &event {
            Some(event) => serde_json::json!({ "event_id": event }),
            None => serde_json::json!({ "from": from, "to": to, "cursor": cursor }),
        };
        let page = match client.resend(org, id, selection).await {
            Ok(reply) => reply.value,
            // A range outruns the resend budget: wait as the API says, then carry on.
            Err(e) if event.is_none() => match e.downcast_ref::<crate::client::ApiFailure>() {
                Some(f) if f.status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    progress.set_message("events resent (waiting for the resend budget)");
                    tokio::time::sleep(f.retry_after.unwrap_or(std::time::Duration::from_secs(1)))
                        .await;
                    continue;
                }
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        };
        all.queued.extend(page.queued);
        all.skipped.extend(page.skipped);
        progress.set_message("events resent");
        progress.set_position((all.queued.len() + all.skipped.len()) as u64);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    progress.finish_and_clear();
    if api.json {
        return print_json_value(&all);
    }
    if all.queued.is_empty() && all.skipped.is_empty() {
        println!("No kept event to resend to webhook {id}.");
        return Ok(());
    }
    let rows = all
        .queued
        .iter()
        .map(|e| {
            vec![
                e.event_id.clone(),
                e.event_type.clone(),
                e.received_at.clone(),
                e.message_id.clone(),
                "queued".into(),
            ]
        })
        .chain(all.skipped.iter().map(|s| {
            vec![
                s.event_id.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("skipped ({})", s.reason),
            ]
        }))
        .collect();
    print_table(
        &["EVENT", "TYPE", "RECEIVED AT", "WEBHOOK-ID", "RESULT"],
        rows,
    );
    println!(
        "Resent {} event(s) to webhook {id}; {} skipped.",
        all.queued.len(),
        all.skipped.len()
    );
    Ok(())
}
