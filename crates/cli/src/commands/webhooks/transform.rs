//! A webhook's transform: the flags that set it on `create` and `update`, and
//! `webhooks preview-transform`, which shows what a transform makes of a sample event.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hookwire_api::webhooks::Preview;
use serde_json::{Value, json};

use crate::api_flags::ApiArgs;
use crate::client::ApiClient;
use crate::output::{print_json, print_table};

/// The transform of a new webhook.
#[derive(Args, Debug, Default)]
pub struct TransformArgs {
    /// A CEL expression over `body` and `event_type` whose value (a map or a list) is sent
    /// as the JSON body instead of the event's, e.g.
    /// '{"text": "Report finished: " + body.report_run_url}'.
    #[arg(long, conflicts_with = "transform_file")]
    transform: Option<String>,
    /// A file holding the transform (a message card spans lines).
    #[arg(long, value_name = "FILE")]
    transform_file: Option<PathBuf>,
}

impl TransformArgs {
    /// The transform given, read from its file when it is in one.
    pub(super) fn read(&self) -> Result<Option<String>> {
        match (&self.transform, &self.transform_file) {
            (Some(source), _) => Ok(Some(source.clone())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the transform from {}", path.display()))
                .map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// A change of a webhook's transform.
#[derive(Args, Debug, Default)]
pub struct TransformChangeArgs {
    #[command(flatten)]
    set: TransformArgs,
    /// Remove the transform: the event's body is sent as it is.
    #[arg(long, conflicts_with_all = ["transform", "transform_file"])]
    no_transform: bool,
}

impl TransformChangeArgs {
    /// `Some(None)` removes it, `Some(Some(_))` sets it, `None` leaves it.
    pub(super) fn change(&self) -> Result<Option<Option<String>>> {
        if self.no_transform {
            return Ok(Some(None));
        }
        Ok(self.set.read()?.map(Some))
    }
}

/// `webhooks preview-transform`.
#[derive(Args, Debug)]
pub struct PreviewArgs {
    /// The organization.
    #[arg(long)]
    org: String,
    /// The webhook whose transform (and headers) to preview; without, a draft's.
    #[arg(long = "webhook", alias = "id", value_name = "ID")]
    id: Option<String>,
    /// The sample's event type; its body is the catalog's example unless --body-file.
    #[arg(long)]
    event_type: String,
    /// A file with the sample's body (a JSON object).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    #[command(flatten)]
    transform: TransformArgs,
}

/// Shows the body and headers the transform would send for the sample; sends nothing.
pub(super) async fn preview(api: &ApiArgs, client: &ApiClient, args: PreviewArgs) -> Result<()> {
    let mut request = json!({ "event_type": args.event_type });
    if let Some(path) = &args.body_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the sample body from {}", path.display()))?;
        let body: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        request["body"] = body;
    }
    if let Some(transform) = args.transform.read()? {
        request["transform"] = transform.into();
    }
    let reply = client
        .preview_transform(&args.org, args.id.as_deref(), request)
        .await?;
    if api.json {
        print_json(&reply.raw);
        return Ok(());
    }
    let Preview {
        transformed,
        body,
        body_bytes,
        sha256,
        headers,
    } = reply.value;
    let what = if transformed {
        "transformed"
    } else {
        "the event's own"
    };
    println!("Body ({what}, {body_bytes} bytes, sha256 {sha256}):");
    println!("{body}");
    println!();
    print_table(
        &["HEADER", "VALUE"],
        headers.into_iter().map(|(n, v)| vec![n, v]).collect(),
    );
    Ok(())
}
