//! `/openapi.json` describes exactly the router's routes.

use hookwire_testkit::Harness;
use reqwest::Method;

use crate::Api;

#[tokio::test]
async fn every_documented_route_is_served_and_every_served_route_is_documented() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let (status, spec) = api.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    // Every route the router serves; `router_knows` below proves each one is served.
    let mut served = vec![
        "GET /healthz",
        "GET /readyz",
        "GET /openapi.json",
        "GET /metrics",
        "GET /v1/event-types",
        "GET /v1/orgs/{org}/webhooks",
        "POST /v1/orgs/{org}/webhooks",
        "GET /v1/orgs/{org}/webhooks/{id}",
        "PATCH /v1/orgs/{org}/webhooks/{id}",
        "DELETE /v1/orgs/{org}/webhooks/{id}",
        "POST /v1/orgs/{org}/webhooks/{id}/test",
        "POST /v1/orgs/{org}/webhooks/{id}/rotate-secret",
        "POST /v1/orgs/{org}/webhooks/{id}/rotate-ed25519-key",
        "POST /v1/orgs/{org}/webhooks/{id}/resend",
        "GET /v1/orgs/{org}/webhooks/{id}/attempts",
        "GET /v1/orgs/{org}/dead-letters",
        "POST /v1/orgs/{org}/dead-letters/replay",
        "POST /v1/orgs/{org}/dead-letters/purge",
        "GET /v1/admin/dead-letters",
        "POST /v1/admin/dead-letters/purge",
        "GET /v1/admin/orgs",
        "POST /v1/orgs/{org}/access-tokens",
        "GET /v1/whoami",
    ];
    served.sort_unstable();
    assert_eq!(documented, served);

    for route in &served {
        let (method, path) = route.split_once(' ').expect("method and path");
        let concrete = path
            .replace("{org}", "acme")
            .replace("{id}", "0190c5b8-0000-7000-8000-000000000000");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, body) = api.call(method, &concrete, None).await;
        let unrouted =
            matches!(body["error"]["message"].as_str(), Some("no such route")) || status == 405;
        assert!(
            !unrouted,
            "{route} is documented but not served: {status} {body}"
        );
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
