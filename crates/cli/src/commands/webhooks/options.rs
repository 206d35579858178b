//! The flags of a webhook's delivery options that `create` and `update` share: custom
//! headers, and the TLS settings read from PEM files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Custom headers to set.
#[derive(Args, Debug, Default)]
pub struct HeaderArgs {
    /// A static header for every request, as NAME=VALUE; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// A header whose value is a secret (sealed at rest, never shown again), as
    /// NAME=VALUE; repeatable. The value shows in the process list: prefer
    /// --secret-header-file.
    #[arg(long = "secret-header", value_name = "NAME=VALUE")]
    secret_headers: Vec<String>,
    /// A secret header whose value is the first line of a file, as NAME=PATH; repeatable.
    #[arg(long = "secret-header-file", value_name = "NAME=PATH")]
    secret_header_files: Vec<String>,
}

impl HeaderArgs {
    /// The plain and the secret headers, by name.
    pub(super) fn parse(&self) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
        let plain = self
            .headers
            .iter()
            .map(|h| split_header(h, "--header"))
            .collect::<Result<_>>()?;
        let mut secret: BTreeMap<String, String> = self
            .secret_headers
            .iter()
            .map(|h| split_header(h, "--secret-header"))
            .collect::<Result<_>>()?;
        for spec in &self.secret_header_files {
            let (name, path) = split_header(spec, "--secret-header-file")?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the value of header {name} from {path}"))?;
            secret.insert(name, text.lines().next().unwrap_or_default().to_owned());
        }
        Ok((plain, secret))
    }
}

/// A webhook's TLS settings toward its receiver, read from PEM files.
#[derive(Args, Debug, Default)]
pub struct TlsArgs {
    /// A PEM file with the client certificate (its own first, then intermediates),
    /// presented when the receiver asks for one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The PEM file of the client certificate's private key: sealed at rest, never shown
    /// again.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A PEM file of CA certificates that may sign the receiver's certificate (a
    /// receiver with a private CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The client certificate, its key and the CA certificates, as PEM text.
    pub(super) fn read(&self) -> Result<[Option<String>; 3]> {
        let read = |path: &Option<PathBuf>, what: &str| {
            path.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read the {what} from {}", p.display()))
                })
                .transpose()
        };
        Ok([
            read(&self.client_cert, "client certificate")?,
            read(&self.client_key, "client key")?,
            read(&self.ca_file, "CA certificates")?,
        ])
    }
}

/// `NAME=VALUE` as a pair; the API checks the name and the value.
fn split_header(spec: &str, flag: &str) -> Result<(String, String)> {
    match spec.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => bail!("{flag} takes NAME=VALUE, not `{spec}`"),
    }
}
