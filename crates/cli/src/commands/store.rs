//! `hookwire store`: maintenance of the store itself, with `serve` stopped (sled allows
//! one process per store directory).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use hookwire_core::Config;

#[derive(Subcommand, Debug)]
pub enum StoreAction {
    /// Seal every signing secret again under `secrets.key`, so that the keys in
    /// `secrets.previous_keys` can be removed. Stop `serve` first.
    Reseal {
        /// A TOML file layered over the defaults (the one `serve` runs with).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs one `store` subcommand and prints what it did.
pub fn run(action: StoreAction) -> Result<()> {
    match action {
        StoreAction::Reseal { config } => {
            let figment = crate::config::layers(config.as_deref())?;
            let config: Config = crate::config::extract(&figment, "")?;
            config.secrets_key()?;
            config.previous_secrets_keys()?;
            let store = hookwire_app::open_store(&config).context(
                "cannot open the store (is `serve` still running? sled allows one process)",
            )?;
            let count = store.reseal()?;
            println!(
                "resealed {count} webhook(s) in {} under secrets.key; secrets.previous_keys can now be removed",
                config.store.path.display()
            );
            Ok(())
        }
    }
}
