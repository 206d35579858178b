//! `/openapi.json` describes exactly the router's routes.

use hookwire_testkit::Harness;
use reqwest::Method;

use crate::Api;

/// The methods a route may have; any other is refused before routing.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The document is built from the same `routes!` calls that register the handlers, so the
/// routes come from the router itself: every documented route must be served, and every
/// method the document leaves out of a path must answer 405.
#[tokio::test]
async fn every_documented_route_is_served_and_every_served_route_is_documented() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let (status, spec) = api.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    for known in ["/healthz", "/readyz", "/metrics", "/v1/orgs/{org}/webhooks"] {
        assert!(paths.contains_key(known), "{known} is documented");
    }
    for (path, item) in paths {
        let documented: Vec<String> = item
            .as_object()
            .expect("path item")
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        let concrete = path
            .replace("{org}", "acme")
            .replace("{id}", "0190c5b8-0000-7000-8000-000000000000");
        for method in METHODS {
            let (status, body) = api
                .call(
                    Method::from_bytes(method.as_bytes()).expect("method"),
                    &concrete,
                    None,
                )
                .await;
            let route = format!("{method} {path}");
            if documented.iter().any(|m| m == method) {
                let unrouted = status == 405
                    || matches!(body["error"]["message"].as_str(), Some("no such route"));
                assert!(
                    !unrouted,
                    "{route} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(status, 405, "{route} is served but not documented: {body}");
            }
        }
    }
    h.finish().await;
}

/// schemathesis (from the CI virtualenv) fuzzes every operation from `/openapi.json`:
/// no 5xx, and every response matches the documented status codes and schemas. The
/// harness runs in loopback-only mode, which keeps fuzzed webhook URLs off the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let h = Harness::start(|_| {}).await;
    assert!(
        h.config.delivery.only_allowed_cidrs,
        "never fuzz without loopback-only mode"
    );
    let schemathesis = hookwire_testkit::tools::python().with_file_name("schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run tests/setup-tools",
        schemathesis.display()
    );
    let workdir = tempfile::tempdir().expect("tempdir");
    let output = tokio::process::Command::new(&schemathesis)
        .current_dir(workdir.path())
        .arg("run")
        .arg(format!("{}/openapi.json", h.api_url()))
        .args(["-H", &format!("Authorization: Bearer {}", hookwire_testkit::harness::API_TOKEN)])
        .args(["--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"])
        .args(["--max-examples", "25", "--request-timeout", "20", "--generation-deterministic"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("schemathesis runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(
        report.contains("passed"),
        "schemathesis ran no test case:\n{report}"
    );
    h.finish().await;
}
