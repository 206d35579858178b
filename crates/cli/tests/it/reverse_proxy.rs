//! The shipped reverse proxy config (`deploy/nginx/hookwire.conf`) run by Debian's nginx
//! as it is, with only its ports, certificate files and log path changed: TLS from a test
//! CA in front of a `serve` child, the API and the console under `/hookwire/`, an org
//! token's webhook created (its test event delivered) and listed, an event delivered,
//! `/readyz` and `/metrics` refused at the proxy, client addresses in its access log.
//! Its timeouts are checked against hookwire's defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hookwire_core::Config;
use hookwire_core::config::OrgToken;
use hookwire_testkit::tls::{SERVER_NAMES, TestCa};
use hookwire_testkit::tools::{nginx, repo_root};
use hookwire_testkit::{Nginx, Receiver, ServeChild, test_config, unique_namespace};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::write_config;

const WAIT: Duration = Duration::from_secs(30);
/// The path prefix the shipped config serves hookwire under.
pub(crate) const PREFIX: &str = "/hookwire";
const ORG_TOKEN: &str = "acme-org-token-0123456789";

/// The shipped config, as an operator copies it.
fn shipped() -> String {
    let path = repo_root().join("deploy/nginx/hookwire.conf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `shipped` with each `(from, to)` replaced; each `from` must occur exactly once, so that
/// the test runs the shipped text and nothing else.
fn render(shipped: &str, swaps: &[(&str, String)]) -> String {
    let mut text = shipped.to_owned();
    for (from, to) in swaps {
        assert_eq!(
            text.matches(from).count(),
            1,
            "deploy/nginx/hookwire.conf must contain `{from}` once: the test replaces it"
        );
        text = text.replace(from, to);
    }
    text
}

/// The value of the one `name value;` directive in `text`.
fn directive<'a>(text: &'a str, name: &str) -> &'a str {
    let values: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix(name)?.strip_prefix(' '))
        .map(|rest| rest.trim().trim_end_matches(';'))
        .collect();
    assert_eq!(
        values.len(),
        1,
        "`{name}` once in the shipped config: {values:?}"
    );
    values[0]
}

fn seconds(text: &str, name: &str) -> Duration {
    let value = directive(text, name);
    humantime::parse_duration(value).unwrap_or_else(|e| panic!("{name} {value}: {e}"))
}

#[test]
fn the_shipped_nginx_timeouts_outlast_a_request_and_drop_idle_connections_before_hookwire() {
    let text = shipped();
    let api = Config::defaults().api;
    for name in ["proxy_read_timeout", "proxy_send_timeout"] {
        assert!(
            seconds(&text, name) > api.request_timeout,
            "{name} must exceed api.request_timeout ({:?}): a create waits for its test event",
            api.request_timeout
        );
    }
    assert!(
        seconds(&text, "keepalive_timeout") < api.header_read_timeout,
        "the upstream keepalive_timeout must be under api.header_read_timeout ({:?})",
        api.header_read_timeout
    );
}

/// The test's PEM files.
pub(crate) struct Tls {
    ca: TestCa,
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    pub(crate) fn new(dir: &Path) -> Self {
        let ca = TestCa::new();
        let (cert_pem, key_pem) = ca.server_cert_pem(&SERVER_NAMES);
        let cert = dir.join("fullchain.pem");
        let key = dir.join("privkey.pem");
        std::fs::write(&cert, cert_pem).expect("write the certificate");
        std::fs::write(&key, key_pem).expect("write the key");
        Self { ca, cert, key }
    }

    /// A client that trusts the test CA alone.
    fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).expect("the CA");
        reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }
}

/// nginx running the shipped config in front of `api`.
pub(crate) async fn start_proxy(binary: &Path, tls: &Tls, api: SocketAddr) -> Nginx {
    let shipped = shipped();
    Nginx::start(binary, |listen, dir| {
        render(
            &shipped,
            &[
                ("listen 443 ssl;", format!("listen {listen} ssl;")),
                ("server 127.0.0.1:8080;", format!("server {api};")),
                (
                    "/etc/ssl/hookwire/fullchain.pem",
                    tls.cert.display().to_string(),
                ),
                (
                    "/etc/ssl/hookwire/privkey.pem",
                    tls.key.display().to_string(),
                ),
                (
                    "/var/log/nginx/hookwire.access.log",
                    dir.join("access.log").display().to_string(),
                ),
            ],
        )
    })
    .await
    .expect("nginx starts with the shipped config")
}

/// The status and body of `request`.
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = request.send().await.expect("the proxy answers");
    let status = response.status();
    (status, response.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nginx_config_serves_the_api_and_console_over_tls_under_a_prefix() {
    // First, so that a missing nginx fails the test before anything starts.
    let nginx_binary = nginx();
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = Tls::new(dir.path());
    let receiver = Receiver::ok().await;
    let mut config = test_config(&unique_namespace(), &dir.path().join("store"));
    config.api.org_tokens = vec![OrgToken {
        token: ORG_TOKEN.into(),
        orgs: vec!["acme".into()],
        read_only: false,
    }];
    let path = write_config(&config, dir.path());
    let mut serve = ServeChild::spawn(
        Path::new(env!("CARGO_BIN_EXE_hookwire")),
        &path,
        &dir.path().join("serve.log"),
        &[],
    )
    .expect("serve starts");
    let api = serve.wait_ready(WAIT).await.expect("serve is ready");
    let proxy = start_proxy(&nginx_binary, &tls, api).await;
    let base = format!("https://127.0.0.1:{}{PREFIX}", proxy.addr().port());
    let http = tls.client();

    // A webhook, created with the org token: the request waits for its test event.
    let (status, body) = answer(
        http.post(format!("{base}/v1/orgs/acme/webhooks"))
            .bearer_auth(ORG_TOKEN)
            .json(&json!({"url": receiver.url(), "events": ["report_run_completed"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: Value = serde_json::from_str(&body).expect("JSON");
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1, "the test event");

    let (status, body) = answer(
        http.get(format!("{base}/v1/orgs/acme/webhooks"))
            .bearer_auth(ORG_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(listed["webhooks"][0]["id"], id.as_str(), "{listed}");

    // The console: /hookwire/console redirects to the page, whose assets load from beside
    // it and whose API base is one level above.
    let page = http
        .get(format!("{base}/console"))
        .send()
        .await
        .expect("the console");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.url().path(), format!("{PREFIX}/console/"));
    let html = page.text().await.expect("the page");
    assert!(html.contains("app.js"), "{html}");
    let (status, script) = answer(http.get(format!("{base}/console/api.js"))).await;
    assert_eq!(status, StatusCode::OK, "{script}");
    assert!(
        script.contains("new URL('../', document.baseURI)"),
        "{script}"
    );

    // Health and metrics: the API port serves them (no ops_listen here), the proxy not.
    let direct = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for route in ["readyz", "metrics"] {
        let status = direct
            .get(format!("http://{api}/{route}"))
            .send()
            .await
            .expect("the API port answers")
            .status();
        assert_eq!(status, StatusCode::OK, "/{route} on the API port");
        let (status, body) = answer(http.get(format!("{base}/{route}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{PREFIX}/{route}: {body}");
        assert!(!body.contains("hookwire_"), "{body}");
    }

    let producer = crate::producer_for(&config).await;
    crate::publish_runs(&producer, 0..1).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert!(
        String::from_utf8_lossy(&got[1].body).contains("https://mode.test/runs/0"),
        "{:?}",
        got[1]
    );

    // The proxy logs who asked; hookwire does not.
    let access = std::fs::read_to_string(proxy.dir().join("access.log")).expect("access log");
    assert!(
        access.lines().any(|l| l.starts_with("127.0.0.1 ")
            && l.contains(&format!(
                "\"POST {PREFIX}/v1/orgs/acme/webhooks HTTP/1.1\" 201"
            ))),
        "{access}"
    );
    assert!(!access.contains(ORG_TOKEN), "{access}");

    producer.close().await.expect("close");
    let stopped = serve.terminate(WAIT).await.expect("serve stops");
    assert!(stopped.success(), "{stopped}\n{}", serve.log_tail());
    crate::delete_namespace(&config).await;
}
