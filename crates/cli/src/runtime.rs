//! The async runtime: a tokio worker for every two cores, not one per core.
//!
//! hookwire runs next to its broker, and its work per message crosses threads that are not
//! tokio workers (lapin's I/O thread, sled's flusher, the blocking pool). A worker per core
//! makes the workers wake each other for each message and compete with RabbitMQ
//! (measured in docs/history.md).

/// Overrides the worker count, as tokio's own default runtime reads it.
const WORKERS_ENV: &str = "TOKIO_WORKER_THREADS";

/// Builds the multi-threaded runtime, with [`WORKERS_ENV`] if it is set.
pub fn build() -> Result<tokio::runtime::Runtime, String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = worker_threads(cores, std::env::var(WORKERS_ENV).ok().as_deref())?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Half the cores, at least one; or the override, a positive whole number.
fn worker_threads(cores: usize, configured: Option<&str>) -> Result<usize, String> {
    match configured {
        None => Ok((cores / 2).max(1)),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{WORKERS_ENV} must be a whole number of worker threads above 0, not {text:?}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_for_every_two_cores_and_at_least_one() {
        assert_eq!(worker_threads(1, None), Ok(1));
        assert_eq!(worker_threads(2, None), Ok(1));
        assert_eq!(worker_threads(3, None), Ok(1));
        assert_eq!(worker_threads(8, None), Ok(4));
    }

    #[test]
    fn the_environment_overrides_the_count() {
        assert_eq!(worker_threads(2, Some("2")), Ok(2));
        assert_eq!(worker_threads(64, Some(" 3 ")), Ok(3));
    }

    #[test]
    fn a_bad_override_is_a_clear_error() {
        for bad in ["0", "-1", "two", ""] {
            let error = worker_threads(2, Some(bad)).unwrap_err();
            assert!(
                error.contains("TOKIO_WORKER_THREADS must be a whole number"),
                "{bad:?}: {error}"
            );
        }
    }
}
