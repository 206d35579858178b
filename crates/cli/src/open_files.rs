//! The open-file limit `serve` needs: a socket for each attempt in flight
//! (`delivery.concurrency`) and each API connection (`api.max_connections`), and a few
//! files more. The soft limit is raised to that, as far as the hard limit allows, so that
//! a login shell's common 1,024 does not cut the default concurrency short; a hard limit
//! below it is said at start, not discovered as "too many open files" under load.

use hookwire_core::Config;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tracing::{info, warn};

/// Files besides the attempts' and the API's sockets: the broker's connections, the
/// store's and the journal's files, the listeners, the runtime's own.
const OTHER_FILES: u64 = 128;

/// The open files `config` may use at once.
fn needed(config: &Config) -> u64 {
    config.delivery.concurrency as u64 + config.api.max_connections as u64 + OTHER_FILES
}

/// Raises the soft open-file limit to what `config` needs, up to the hard limit, and
/// warns when the hard limit is below it.
pub fn raise_for(config: &Config) {
    let needed = needed(config);
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let soft = current.unwrap_or(u64::MAX);
    let hard = maximum.unwrap_or(u64::MAX);
    let wanted = needed.min(hard);
    if soft < wanted {
        let raised = Rlimit {
            current: Some(wanted),
            maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => info!(from = soft, to = wanted, "Open-file limit raised."),
            Err(error) => warn!(%error, limit = soft, needed, "Cannot raise the open-file limit."),
        }
    }
    if hard < needed {
        warn!(
            limit = hard,
            needed,
            concurrency = config.delivery.concurrency,
            max_connections = config.api.max_connections,
            "The hard open-file limit is below what delivery.concurrency and \
             api.max_connections need: attempts past it fail as \"too many open files\". \
             Raise LimitNOFILE (ulimit -n) or lower delivery.concurrency."
        );
    }
}
