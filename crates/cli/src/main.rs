//! `hookwire`: the one binary. `serve` runs the daemon; `webhooks`, `event-types`,
//! `attempts`, `dead-letters`, `access-tokens`, `whoami` and `admin` are clients of its
//! admin API; the other commands are tools.

mod allocator;
mod api_flags;
mod cli;
mod client;
mod commands;
mod config;
mod open_files;
mod output;
mod progress;
mod runtime;
mod serve;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    let runtime = match runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve { config } => serve::serve(config.as_deref()).await,
        Command::Publish(args) => commands::publish::run(args).await,
        Command::Topology { action } => commands::topology::run(action).await,
        Command::Store { action } => commands::store::run(action).await,
        Command::Verify(args) => commands::verify::run(args),
        Command::Webhooks { api, action } => commands::webhooks::run(&api, *action).await,
        Command::EventTypes { api } => commands::event_types::run(&api).await,
        Command::Attempts { api, action } => commands::attempts::run(&api, action).await,
        Command::DeadLetters { api, action } => commands::dead_letters::run(&api, action).await,
        Command::AccessTokens { api, action } => commands::access_tokens::run(&api, action).await,
        Command::Whoami { api } => commands::admin::whoami(&api).await,
        Command::Admin { api, action } => commands::admin::run(&api, action).await,
    }
}
