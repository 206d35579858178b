//! Long operations show progress on a terminal only: a resend over a range and a replay,
//! run in a pseudo-terminal (util-linux `script`), draw their progress there; piped, or
//! with `--json`, they print the result alone.

use std::time::{Duration, SystemTime};

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver, eventually};
use serde_json::Value;

use crate::client::{run_ok, run_with_env};

const WAIT: Duration = Duration::from_secs(30);

/// What `hookwire ARGS` wrote to a pseudo-terminal, stdout and stderr together, and
/// whether it succeeded.
async fn on_a_terminal(h: &Harness, args: &[&str]) -> (bool, String) {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_hookwire"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let mut script = std::process::Command::new("script");
    script
        .args([
            "--quiet",
            "--return",
            "--command",
            &quoted.join(" "),
            "/dev/null",
        ])
        .env("HOOKWIRE_API_URL", h.api_url())
        .env("HOOKWIRE_API_TOKEN", API_TOKEN)
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || script.output())
        .await
        .expect("the blocking task runs")
        .expect("script runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_on_a_terminal_and_never_in_a_pipe_or_json() {
    let h = Harness::start(|_| {}).await;
    let receiver = Receiver::ok().await;
    let url = receiver.url();
    let created = run_ok(
        &h,
        &[
            "webhooks",
            "create",
            "--org",
            "acme",
            "--url",
            &url,
            "--events",
            "report_created",
            "--no-verify",
            "--json",
        ],
    )
    .await;
    let created: Value = serde_json::from_str(&created).expect("JSON");
    let id = created["id"].as_str().expect("id").to_owned();
    let from = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    for n in 0..3 {
        let run = format!("https://mode.test/r/{n}");
        h.publish(
            "acme",
            "report_created",
            &format!("evt-p-{n}"),
            "report_run_url",
            &run,
        )
        .await;
    }
    receiver.wait_for(3, WAIT).await;
    eventually(WAIT, "three kept events", || async {
        (h.store.payload_stats().expect("stats").0 == 3).then_some(())
    })
    .await;
    let to =
        humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(1)).to_string();
    let resend = [
        "webhooks",
        "resend",
        "--org",
        "acme",
        "--webhook",
        &id,
        "--from",
        &from,
        "--to",
        &to,
    ];

    let (ok, shown) = on_a_terminal(&h, &resend).await;
    assert!(ok, "{shown}");
    assert!(shown.contains("events resent"), "no progress: {shown:?}");
    assert!(shown.contains("Resent 3 event(s)"), "{shown}");

    // Piped: the table on stdout, nothing on stderr.
    let api = h.api_url();
    let piped = run_with_env(
        &[&resend[..], &["--api", &api, "--token", API_TOKEN]].concat(),
        &[],
    )
    .await;
    assert!(piped.ok, "{}", piped.stderr);
    assert!(
        piped.stdout.contains("Resent 3 event(s)"),
        "{}",
        piped.stdout
    );
    assert_eq!(piped.stderr, "", "nothing but the result in a pipe");

    // `--json` on a terminal: the JSON alone.
    let (ok, shown) = on_a_terminal(&h, &[&resend[..], &["--json"]].concat()).await;
    assert!(ok, "{shown}");
    assert!(!shown.contains("events resent"), "{shown:?}");
    let result: Value = serde_json::from_str(shown.trim()).expect("JSON alone");
    assert_eq!(
        result["queued"].as_array().map(Vec::len),
        Some(3),
        "{result}"
    );

    // A replay draws its bar toward the number of letters selected.
    h.publish_orgless().await;
    h.wait_dead_letters(1, WAIT).await;
    let (ok, shown) = on_a_terminal(
        &h,
        &[
            "dead-letters",
            "replay",
            "--admin",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
    )
    .await;
    assert!(ok, "{shown}");
    assert!(
        shown.contains("dead letters replayed"),
        "no progress: {shown:?}"
    );
    assert!(shown.contains("Replayed 1 dead letter."), "{shown}");
    h.finish().await;
}
