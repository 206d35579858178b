//! Progress of the long operations (a resend over a range, a replay, `store export` and
//! `import`), drawn on stderr only when it is a terminal and the output is not `--json`:
//! pipes, scripts and logs see the result alone.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often a bar redraws on its own, so that a slow step still shows time passing.
const TICK: Duration = Duration::from_millis(120);

/// A bar toward `total` steps, or a counter when the total is not known; hidden when
/// `quiet` or when stderr is not a terminal.
pub fn bar(total: Option<u64>, message: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})",
        ),
        None => (
            ProgressBar::no_length(),
            "{spinner} {msg} {pos} ({elapsed})",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(TICK);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_bars_are_hidden() {
        assert!(bar(Some(3), "x", true).is_hidden());
        assert!(bar(None, "x", true).is_hidden());
    }
}
