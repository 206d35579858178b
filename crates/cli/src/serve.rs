//! `hookwire serve`: validate the configuration, open the store, run the daemon until
//! SIGTERM or Ctrl-C, then flush the store.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use hookwire_api::ApiState;
use hookwire_core::Config;
use hookwire_core::config::LogFormat;
use hookwire_store::{Store, Writer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Runs the daemon and its admin API until SIGTERM or Ctrl-C.
pub async fn serve(file: Option<&Path>) -> Result<()> {
    let figment = crate::config::layers(file)?;
    let config: Config = crate::config::extract(&figment, "")?;
    config.validate()?;
    init_logging(&config)?;
    let catalog = crate::catalog(&config.catalog)?;
    let key = config.secrets_key()?;
    let store = Store::open(&config.store.path, config.store.cache_capacity_bytes, &key)
        .with_context(|| format!("cannot open the store at {}", config.store.path.display()))?;
    let writer = Writer::spawn(store.clone());
    let daemon = hookwire_consumer::daemon_from_config(
        &config,
        store.clone(),
        writer.clone(),
        catalog.clone(),
    )?;
    let metrics = hookwire_api::meta::install_metrics_recorder()
        .map_err(anyhow::Error::msg)
        .context("cannot install the metrics recorder")?;
    let upkeep = tokio::spawn(hookwire_api::meta::metrics_upkeep(metrics.clone()));
    let api_state = ApiState::from_config(
        &config,
        store.clone(),
        writer,
        catalog,
        daemon.readiness(),
        Some(metrics),
    )?;
    let listener = TcpListener::bind(&config.api.listen)
        .await
        .with_context(|| {
            format!(
                "config key `api.listen`: cannot listen on {}",
                config.api.listen
            )
        })?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = %config.amqp.namespace,
        broker = %crate::redact(&config.amqp.url),
        store = %config.store.path.display(),
        api = %listener.local_addr()?,
        "hookwire starting."
    );
    let stop = CancellationToken::new();
    let api = tokio::spawn(hookwire_api::serve(
        listener,
        api_state,
        stop.clone().cancelled_owned(),
    ));
    // On a worker, not on the thread that blocks on `main`: delivery hand-offs then stay
    // among the runtime's workers instead of waking one more thread per batch.
    let stopper = stop.clone();
    let result = tokio::spawn(daemon.run(async move {
        shutdown_signal().await;
        stopper.cancel();
    }))
    .await?;
    // The daemon also ends on its own (a refusal to start): take the API down with it.
    stop.cancel();
    api.await?.context("the admin API failed")?;
    upkeep.abort();
    tokio::task::spawn_blocking(move || store.flush())
        .await?
        .context("cannot flush the store")?;
    result?;
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
