//! `hookwire verify` with the secret kept out of the process list.

use std::io::Write;
use std::process::Stdio;

use hookwire_core::Secret;

use crate::hookwire;

/// Runs `hookwire verify` with `secret_args`, the delivery's headers, and `stdin`.
fn verify(secret_args: &[&str], timestamp: u64, signature: &str, stdin: &[u8]) -> (bool, String) {
    let mut child = hookwire()
        .arg("verify")
        .args(secret_args)
        .args([
            "--webhook-id",
            "msg_1",
            "--timestamp",
            &timestamp.to_string(),
        ])
        .args(["--signature", signature])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A refused argument ends the process before it reads stdin: a closed pipe is its answer.
    let written = child.stdin.take().expect("stdin").write_all(stdin);
    if let Err(error) = written {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write: {error}"
        );
    }
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.success() && stdout.trim() == "ok",
        format!("{stdout}{stderr}"),
    )
}

#[test]
fn the_secret_can_come_from_a_file() {
    let secret = Secret::generate().expect("rng");
    let body = br#"{"event":"report_created","report_run_url":"u"}"#;
    let now = hookwire_core::now_ms() / 1000;
    let signature = secret.sign("msg_1", now, body);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{}\n", secret.to_whsec())).expect("write");
    let file = file.to_str().expect("utf-8 path");

    let (ok, output) = verify(&["--secret-file", file], now, &signature, body);
    assert!(ok, "{output}");
    let (ok, output) = verify(&["--secret-file", file], now, &signature, b"{}");
    assert!(!ok && output.contains("signature"), "{output}");

    let missing = dir.path().join("missing");
    let (ok, output) = verify(
        &["--secret-file", missing.to_str().expect("utf-8")],
        now,
        &signature,
        body,
    );
    assert!(!ok && output.contains("--secret-file"), "{output}");
}

#[test]
fn the_secret_can_come_from_the_first_line_of_stdin() {
    let secret = Secret::generate().expect("rng");
    // The body may hold newlines of its own: only the first line is the secret.
    let body = b"{\"event\":\"report_created\",\n\"report_run_url\":\"u\"}\n";
    let now = hookwire_core::now_ms() / 1000;
    let signature = secret.sign("msg_1", now, body);
    let mut stdin = format!("{}\n", secret.to_whsec()).into_bytes();
    stdin.extend_from_slice(body);
    let (ok, output) = verify(&["--secret-file", "-"], now, &signature, &stdin);
    assert!(ok, "{output}");

    let (ok, output) = verify(&["--secret-file", "-"], now, &signature, b"no newline");
    assert!(!ok && output.contains("line of its own"), "{output}");
}

#[test]
fn one_source_of_the_secret_is_required() {
    let (ok, output) = verify(&[], 0, "v1,x", b"");
    assert!(!ok && output.contains("--secret"), "{output}");
    let (ok, output) = verify(
        &["--secret", "whsec_eA==", "--secret-file", "-"],
        0,
        "v1,x",
        b"",
    );
    assert!(!ok && output.contains("cannot be used with"), "{output}");
}

#[test]
fn verify_checks_a_delivery_like_a_receiver() {
    let secret = Secret::generate().expect("rng");
    let body = br#"{"event":"report_created","report_run_url":"u"}"#;
    let now = hookwire_core::now_ms() / 1000;
    let signature = secret.sign("msg_1", now, body);
    let whsec = secret.to_whsec();
    let args = ["--secret", whsec.as_str()];
    assert!(verify(&args, now, &signature, body).0);
    let (ok, stderr) = verify(&args, now, &signature, b"{}");
    assert!(!ok && stderr.contains("signature"), "{stderr}");
    let old = now - 600;
    let old_signature = secret.sign("msg_1", old, body);
    let (ok, stderr) = verify(&args, old, &old_signature, body);
    assert!(!ok && stderr.contains("from now"), "{stderr}");

    // The tolerance is a duration like every other; the seconds spelling still works.
    let with = |extra: &[&'static str]| [&args[..], extra].concat();
    let (ok, output) = verify(&with(&["--tolerance", "15m"]), old, &old_signature, body);
    assert!(ok, "{output}");
    let (ok, output) = verify(
        &with(&["--tolerance-secs", "900"]),
        old,
        &old_signature,
        body,
    );
    assert!(ok, "{output}");
    let recent = now - 10;
    let recent_signature = secret.sign("msg_1", recent, body);
    let (ok, output) = verify(
        &with(&["--tolerance", "5s"]),
        recent,
        &recent_signature,
        body,
    );
    assert!(!ok && output.contains("more than 5s from now"), "{output}");
    let (ok, output) = verify(&with(&["--tolerance", "soon"]), now, &signature, body);
    assert!(!ok && output.contains("not a duration"), "{output}");
    let (_, output) = verify(&with(&["--json"]), now, &signature, body);
    let answer: serde_json::Value = serde_json::from_str(output.trim()).expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({"verified": true, "signature": "v1"})
    );
    let both = with(&["--tolerance", "1m", "--tolerance-secs", "60"]);
    let (ok, output) = verify(&both, now, &signature, body);
    assert!(!ok && output.contains("cannot be used with"), "{output}");
}

#[test]
fn a_v1a_signature_verifies_with_the_public_key() {
    let key = hookwire_core::Ed25519Key::generate().expect("rng");
    let secret = Secret::generate().expect("rng");
    let body = br#"{"event":"report_created","report_run_url":"u"}"#;
    let now = hookwire_core::now_ms() / 1000;
    let header = format!(
        "{} {}",
        secret.sign("msg_1", now, body),
        key.sign("msg_1", now, body)
    );
    let public = key.public_key().to_string();
    let (ok, output) = verify(&["--public-key", &public], now, &header, body);
    assert!(ok, "{output}");
    let (ok, output) = verify(&["--public-key", &public], now, &header, b"{}");
    assert!(!ok && output.contains("v1a"), "{output}");
    let other = hookwire_core::Ed25519Key::generate()
        .expect("rng")
        .public_key()
        .to_string();
    let (ok, _) = verify(&["--public-key", &other], now, &header, body);
    assert!(!ok, "another key does not verify");
    let (ok, output) = verify(&["--public-key", "whsec_AAAA"], now, &header, body);
    assert!(!ok && output.contains("whpk_"), "{output}");
    let (ok, output) = verify(&["--public-key", &public], now - 301, &header, body);
    assert!(!ok && output.contains("timestamp"), "{output}");
}
