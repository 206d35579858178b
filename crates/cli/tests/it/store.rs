//! `secrets.key` from the user's side: `serve` refuses a store written under another key,
//! naming the key; a rotation keeps the old key in `secrets.previous_keys` until
//! `hookwire store reseal` has moved every secret to the new one; `store export`'s summary.

use hookwire_core::Config;
use hookwire_store::Store;
use hookwire_testkit::{new_subscription, test_config, unique_namespace};

use crate::{hookwire, write_config};

const KEY_A: &str = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE=";
const KEY_B: &str = "YW5vdGhlci1rZXktYW5vdGhlci1rZXktYW5vdGhlciE=";

fn config(dir: &std::path::Path, key: &str, previous: &[&str]) -> Config {
    let mut c = test_config(&unique_namespace(), &dir.join("store"));
    c.secrets.key = key.into();
    c.secrets.previous_keys = previous.iter().map(|k| (*k).to_owned()).collect();
    c
}

/// Seeds the store, then waits until sled's lock on it is free (a dropped store's
/// background threads release it a moment later), so that the next process can open it.
fn seed(config: &Config, sub: &hookwire_core::Subscription) {
    hookwire_testkit::serve_child::seed_store(config, std::slice::from_ref(sub)).expect("seeded");
    crate::wait_unlocked(&config.store.path);
}

/// Runs `serve`, which must exit on its own within 30 s, and returns its stderr.
fn serve_refuses(config: &Config, dir: &std::path::Path) -> String {
    let path = write_config(config, dir);
    let log = dir.join("serve.log");
    let mut child = hookwire()
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve started on a store of another key: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success(), "serve must refuse to start");
    std::fs::read_to_string(&log).expect("log")
}

#[test]
fn serve_refuses_a_store_written_under_another_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = config(dir.path(), KEY_A, &[]);
    let sub = new_subscription("acme", "http://127.0.0.1:9/hook", &["report_created"]);
    seed(&a, &sub);
    let stderr = serve_refuses(&config(dir.path(), KEY_B, &[]), dir.path());
    assert!(
        stderr.contains("secrets.key"),
        "the message names the key: {stderr}"
    );
    assert!(
        stderr.contains("not the key this store was written with"),
        "{stderr}"
    );
}

#[test]
fn store_reseal_moves_every_secret_to_the_new_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = config(dir.path(), KEY_A, &[]);
    let sub = new_subscription("acme", "http://127.0.0.1:9/hook", &["report_created"]);
    seed(&a, &sub);

    let rotating = config(dir.path(), KEY_B, &[KEY_A]);
    let path = write_config(&rotating, dir.path());
    let out = hookwire()
        .args(["store", "reseal", "--config"])
        .arg(&path)
        .output()
        .expect("reseal runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("resealed 1 webhook(s)"), "{stdout}");
    // Again, with `--json`: the same count, as JSON.
    let out = hookwire()
        .args(["store", "reseal", "--json", "--config"])
        .arg(&path)
        .output()
        .expect("reseal runs");
    assert!(out.status.success(), "{out:?}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(done["resealed"], 1, "{done}");
    assert_eq!(done["store"], a.store.path.display().to_string(), "{done}");

    // The new key alone now opens the store and every secret; the old one no longer does.
    let b = config(dir.path(), KEY_B, &[]);
    {
        let store = Store::open(&b.store.path, 1 << 20, &b.secrets_key().expect("key"))
            .expect("the new key alone opens the store");
        let got = store
            .get("acme", &sub.id)
            .expect("readable")
            .expect("present");
        assert_eq!(got.keys[0].secret.to_whsec(), sub.keys[0].secret.to_whsec());
    }
    let stderr = serve_refuses(&a, dir.path());
    assert!(stderr.contains("secrets.key"), "{stderr}");
}

#[test]
fn store_export_prints_its_summary_as_json_and_no_progress_off_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = config(dir.path(), KEY_A, &[]);
    let sub = new_subscription("acme", "http://127.0.0.1:9/hook", &["report_created"]);
    seed(&a, &sub);
    let path = write_config(&a, dir.path());
    let export = dir.path().join("export.jsonl");
    let out = hookwire()
        .args(["store", "export", "--json", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&export)
        .output()
        .expect("export runs");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // stderr is not a terminal here: the summary alone, as one JSON line.
    let summary: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON alone");
    assert_eq!(summary["webhooks"], 1, "{summary}");
    assert_eq!(summary["dead_letters"], 0, "{summary}");
    let written = std::fs::read_to_string(&export).expect("the export");
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(written.contains(&sub.id.to_string()), "{written}");
}
