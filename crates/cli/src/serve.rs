//! `hookwire serve`: validate the configuration, start logging, then build and run the
//! [`App`] until SIGTERM or Ctrl-C; SIGHUP reloads `api.tokens`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hookwire_api::OperatorTokens;
use hookwire_app::App;
use hookwire_core::Config;
use hookwire_core::config::LogFormat;
use tracing::{Instrument, error, info};
use tracing_subscriber::EnvFilter;

/// Runs the daemon and its admin API until SIGTERM or Ctrl-C.
pub async fn serve(file: Option<&Path>) -> Result<()> {
    let figment = crate::config::layers(file)?;
    let config: Config = crate::config::extract(&figment, "")?;
    config.validate()?;
    init_logging(&config)?;
    crate::open_files::raise_for(&config);
    let app = App::build(&config).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = hookwire_app::COMMIT,
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
    let reloader = tokio::spawn(
        reload_tokens_on_hangup(file.map(Path::to_owned), app.operator_tokens())?
            .instrument(span.clone()),
    );
    let ran = app.run(shutdown_signal()).instrument(span).await;
    reloader.abort();
    ran?;
    info!("hookwire stopped.");
    Ok(())
}

/// On every SIGHUP, reads the configuration again (file and environment, as at start)
/// and puts its `api.tokens` in force. A configuration that does not load or validate
/// changes nothing: the tokens in force stay, and the error is logged. Other keys take
/// effect at the next start. Listening starts before `serve` is ready, so that a SIGHUP
/// never meets the default action, which would end the process.
#[cfg(unix)]
fn reload_tokens_on_hangup(
    file: Option<PathBuf>,
    tokens: OperatorTokens,
) -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            match load_tokens(file.as_deref()) {
                Ok(new) => {
                    let count = new.len();
                    tokens.replace(new);
                    info!(tokens = count, "SIGHUP: api.tokens reloaded.");
                }
                Err(e) => error!(
                    error = format!("{e:#}"),
                    "SIGHUP: the configuration is invalid; api.tokens unchanged."
                ),
            }
        }
    })
}

#[cfg(not(unix))]
fn reload_tokens_on_hangup(
    _file: Option<PathBuf>,
    _tokens: OperatorTokens,
) -> Result<impl Future<Output = ()>> {
    Ok(std::future::pending())
}

/// `api.tokens` of the configuration as it is now, the whole of which must be valid.
fn load_tokens(file: Option<&Path>) -> Result<Vec<String>> {
    let figment = crate::config::layers(file)?;
    let config: Config = crate::config::extract(&figment, "")?;
    config.validate()?;
    Ok(config.api.tokens)
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
