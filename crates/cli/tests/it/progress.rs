//! Long operations show progress on a terminal only: a resend over a range, a replay,
//! `admin export`, `store export`, `import` and `restore`, run in a pseudo-terminal
//! (util-linux `script`), draw their progress there; piped, or with `--json`, they print
//! the result alone.

use std::time::{Duration, SystemTime};

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::serve_child::seed_store;
use hookwire_testkit::{
    Harness, Receiver, eventually, new_subscription, test_config, unique_namespace,
};
use serde_json::Value;

use crate::client::{run_ok, run_with_env};
use crate::{delete_namespace, write_config};

const WAIT: Duration = Duration::from_secs(30);

/// What `hookwire ARGS` wrote to a pseudo-terminal, stdout and stderr together, and
/// whether it succeeded, run against `h`'s API.
async fn on_a_terminal(h: &Harness, args: &[&str]) -> (bool, String) {
    let api = h.api_url();
    on_a_terminal_with(
        &[
            ("HOOKWIRE_API_URL", &api),
            ("HOOKWIRE_API_TOKEN", API_TOKEN),
        ],
        args,
    )
    .await
}

/// What `hookwire ARGS` wrote to a pseudo-terminal with `env` set, and whether it
/// succeeded.
async fn on_a_terminal_with(env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
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
        .envs(env.iter().copied())
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

    // A hot export counts the entries it receives.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("admin.jsonl").display().to_string();
    let export = ["admin", "export", "--out", &out];
    let (ok, shown) = on_a_terminal(&h, &export).await;
    assert!(ok, "{shown}");
    assert!(shown.contains("entries received"), "no progress: {shown:?}");
    assert!(shown.contains("exported 1 webhook(s)"), "{shown}");
    let piped = run_with_env(
        &[&export[..], &["--api", &api, "--token", API_TOKEN]].concat(),
        &[],
    )
    .await;
    assert!(piped.ok, "{}", piped.stderr);
    assert_summary_alone(&piped.stderr, "exported 1 webhook(s)");
    let (ok, shown) = on_a_terminal(&h, &[&export[..], &["--json"]].concat()).await;
    assert!(ok, "{shown}");
    let summary: Value = serde_json::from_str(shown.trim()).expect("JSON alone");
    assert_eq!(summary["webhooks"], 1, "{summary}");

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

/// Asserts that `stderr` is the one line of a summary that contains `summary`: no bar.
fn assert_summary_alone(stderr: &str, summary: &str) {
    assert!(
        stderr.lines().count() == 1 && stderr.contains(summary),
        "nothing but the summary in a pipe: {stderr:?}"
    );
}

/// `store export` of a stopped node's store, `store import` into a fresh namespace and
/// `store restore` into an empty store: a bar on a terminal, the summary alone in a pipe
/// or with `--json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_export_import_and_restore_show_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = test_config(&unique_namespace(), &dir.path().join("store"));
    let subs: Vec<_> = (0..20)
        .map(|i| {
            new_subscription(
                "acme",
                &format!("http://127.0.0.1:9/{i}"),
                &["report_created"],
            )
        })
        .collect();
    seed_store(&source, &subs).expect("seeded");
    crate::wait_unlocked(&source.store.path);
    let config = write_config(&source, dir.path()).display().to_string();
    let file = |name: &str| dir.path().join(name).display().to_string();

    let (export, exported) = (file("export.jsonl"), "exported 20 webhook(s)");
    let args = ["store", "export", "--config", &config, "--out", &export];
    let (ok, shown) = on_a_terminal_with(&[], &args).await;
    assert!(ok, "{shown}");
    assert!(shown.contains("entries written"), "no progress: {shown:?}");
    assert!(shown.contains(exported), "{shown}");
    let piped = run_with_env(&args, &[]).await;
    assert!(piped.ok, "{}", piped.stderr);
    assert_summary_alone(&piped.stderr, exported);
    let (ok, shown) = on_a_terminal_with(&[], &[&args[..], &["--json"]].concat()).await;
    assert!(ok, "{shown}");
    let summary: Value = serde_json::from_str(shown.trim()).expect("JSON alone");
    assert_eq!(summary["webhooks"], 20, "{summary}");

    // Each import into a fresh namespace of its own: one that holds changes refuses it.
    let targets = ["terminal", "piped", "json"].map(|name| {
        let at = dir.path().join(name);
        std::fs::create_dir_all(&at).expect("dir");
        let target = test_config(&unique_namespace(), &at.join("store"));
        let path = write_config(&target, &at).display().to_string();
        (target, path)
    });
    let paths = targets.each_ref().map(|(_, path)| path.as_str());
    let into_each = |command, progress, summary| {
        from_export_into_each(command, paths, &export, progress, summary)
    };
    let imported = into_each("import", "entries published", "imported 20 entries").await;
    assert_eq!(imported["imported"], 20, "{imported}");
    // The same configurations' stores, empty: a restore into each.
    let restored = into_each("restore", "entries restored", "restored 20 webhook(s)").await;
    assert_eq!(restored["webhooks"], 20, "{restored}");
    for (target, _) in &targets {
        delete_namespace(target).await;
    }
}

/// `store <command> --config <path> --in <export>` into each of three configurations:
/// on a terminal (a bar saying `progress`, then `summary`), in a pipe (`summary`, nothing
/// on stderr) and with `--json` on a terminal, whose JSON alone it returns.
async fn from_export_into_each(
    command: &str,
    configs: [&str; 3],
    export: &str,
    progress: &str,
    summary: &str,
) -> Value {
    let args = |i: usize| ["store", command, "--config", configs[i], "--in", export];
    let (ok, shown) = on_a_terminal_with(&[], &args(0)).await;
    assert!(ok, "{shown}");
    assert!(shown.contains(progress), "no progress: {shown:?}");
    assert!(shown.contains(summary), "{shown}");
    let run = run_with_env(&args(1), &[]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains(summary), "{}", run.stdout);
    assert_eq!(run.stderr, "", "nothing but the result in a pipe");
    let (ok, shown) = on_a_terminal_with(&[], &[&args(2)[..], &["--json"]].concat()).await;
    assert!(ok, "{shown}");
    serde_json::from_str(shown.trim()).expect("JSON alone")
}
