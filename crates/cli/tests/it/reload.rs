//! SIGHUP makes a running `serve` read its configuration again and put its `api.tokens`
//! in force: a token added works at once, a token removed gets 401, and a configuration
//! that does not validate keeps the tokens in force and logs why.

use std::path::Path;
use std::time::Duration;

use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{ServeChild, eventually, test_config, unique_namespace};

use crate::write_config;

const WAIT: Duration = Duration::from_secs(60);
const ADDED: &str = "reloaded-token-0123456789abcdef";

/// The status of `GET /v1/orgs/acme/webhooks` with `token`.
async fn status_with(http: &reqwest::Client, api: std::net::SocketAddr, token: &str) -> u16 {
    http.get(format!("http://{api}/v1/orgs/acme/webhooks"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the API answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn sighup_puts_new_api_tokens_in_force_and_an_invalid_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(&unique_namespace(), &dir.path().join("store"));
    let path = write_config(&config, dir.path());
    let log = dir.path().join("serve.log");
    let mut serve = ServeChild::spawn(Path::new(env!("CARGO_BIN_EXE_hookwire")), &path, &log, &[])
        .expect("serve starts");
    let api = serve.wait_ready(WAIT).await.expect("serve is ready");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    assert_eq!(status_with(&http, api, API_TOKEN).await, 200);
    assert_eq!(status_with(&http, api, ADDED).await, 401);

    // The file now lists another token instead.
    config.api.tokens = vec![ADDED.into()];
    write_config(&config, dir.path());
    serve.hang_up().expect("SIGHUP");
    eventually(WAIT, "the added token to work", || async {
        (status_with(&http, api, ADDED).await == 200).then_some(())
    })
    .await;
    assert_eq!(
        status_with(&http, api, API_TOKEN).await,
        401,
        "the removed token still works"
    );

    // A token too short to be valid: nothing changes, and the log says why.
    config.api.tokens = vec!["short".into()];
    write_config(&config, dir.path());
    serve.hang_up().expect("SIGHUP");
    eventually(WAIT, "the refused reload to be logged", || async {
        serve
            .own_log()
            .contains("api.tokens unchanged")
            .then_some(())
    })
    .await;
    let logged = serve.own_log();
    assert!(
        logged.contains("api.tokens") && logged.contains("at least 16 characters"),
        "{logged}"
    );
    serve.check_alive().expect("serve runs on");
    assert_eq!(status_with(&http, api, ADDED).await, 200);
    assert_eq!(status_with(&http, api, "short").await, 401);
    assert_eq!(status_with(&http, api, API_TOKEN).await, 401);
    let stopped = serve.terminate(WAIT).await.expect("serve stops");
    assert!(stopped.success(), "{stopped}\n{}", serve.log_tail());
    crate::delete_namespace(&config).await;
}
