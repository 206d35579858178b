//! The flags every admin API command shares: where the API is, the token, `--json`, and
//! which page of a list.

use anyhow::{Result, bail};

use crate::client::ApiClient;

/// Where the admin API is and how to talk to it. Global, so they go anywhere after
/// `webhooks` (or `attempts`, `dead-letters`): `hookwire webhooks list --org acme --json`.
#[derive(clap::Args, Debug)]
pub struct ApiArgs {
    // Not named `url`: a global arg shares its id with the subcommands' args, and
    // `create --url` must not replace it.
    /// The admin API's base URL.
    #[arg(
        long = "api",
        value_name = "URL",
        env = "HOOKWIRE_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api_url: String,
    /// A bearer token: one of the daemon's `api.tokens` or `api.org_tokens`, or an
    /// access token.
    #[arg(
        long,
        env = "HOOKWIRE_API_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON answer, indented, instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ApiArgs {
    /// A client of the API these flags name; refuses to go on without a token.
    pub fn client(&self) -> Result<ApiClient> {
        let Some(token) = self.token.as_deref().filter(|t| !t.is_empty()) else {
            bail!(
                "no API token: pass --token or set HOOKWIRE_API_TOKEN (one of the daemon's `api.tokens`)"
            );
        };
        ApiClient::new(&self.api_url, token)
    }
}

/// Which page of a list, or every page.
#[derive(clap::Args, Debug)]
pub struct Pages {
    /// Items per page, 1 to 500 (the API's default is 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Start at this page: the cursor a previous `list` printed.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow the pages to the end and print them as one.
    #[arg(long)]
    pub all: bool,
}
