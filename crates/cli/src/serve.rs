//! `hookwire serve`: validate the configuration, start logging, then build and run the
//! [`App`] until SIGTERM or Ctrl-C.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use hookwire_app::App;
use hookwire_core::Config;
use hookwire_core::config::LogFormat;
use tracing::{Instrument, info};
use tracing_subscriber::EnvFilter;

/// Runs the daemon and its admin API until SIGTERM or Ctrl-C.
pub async fn serve(file: Option<&Path>) -> Result<()> {
    let figment = crate::config::layers(file)?;
    let config: Config = crate::config::extract(&figment, "")?;
    config.validate()?;
    init_logging(&config)?;
    let app = App::build(&config).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = %config.amqp.namespace,
        broker = %config
            .amqp
            .broker_urls()
            .iter()
            .map(|u| hookwire_core::config::redact_url(u))
            .collect::<Vec<_>>()
            .join(", "),
        store = %config.store.path.display(),
        api = %app.api_addr()?,
        ops = ?app.ops_addr()?,
        node = %app.node(),
        replication = config.replication.enabled,
        "hookwire starting."
    );
    let span = tracing::info_span!("node", id = %app.node());
    app.run(shutdown_signal()).instrument(span).await?;
    info!("hookwire stopped.");
    Ok(())
}

fn init_logging(config: &Config) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::try_new(directives).context("RUST_LOG")?,
        Err(_) => EnvFilter::try_new(&config.log.level).context("config key `log.level`")?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a terminal, not for journald or a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Completes on SIGTERM (systemd, docker stop) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    info!("Shutdown signal received.");
}
