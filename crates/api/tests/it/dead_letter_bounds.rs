//! An over-size event does not make the dead-letter archive, or the routes that read it,
//! as large as the event: the archive keeps a bounded prefix with the size, listing
//! carries no bodies unless asked, and a truncated letter is not replayed.

use std::time::Duration;

use hookwire_testkit::{Harness, eventually};
use reqwest::Method;
use serde_json::json;

use crate::{Api, error_code};

const WAIT: Duration = Duration::from_secs(30);
const FOUR_MIB: usize = 4 << 20;

#[tokio::test]
async fn a_4_mib_invalid_event_is_archived_bounded_listed_small_and_not_replayed() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let cap = h.config.store.dead_letter_body_max_bytes;
    let mut body = br#"{"event":"report_created","report_run_url":""#.to_vec();
    body.resize(FOUR_MIB - 2, b'x');
    body.extend_from_slice(br#""}"#);
    h.publish_raw_report("huge", &body).await;
    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead[0].reason, "too_large");
    assert!(
        dead[0].body.len() <= cap,
        "archived {} bytes",
        dead[0].body.len()
    );
    assert_eq!(dead[0].body_bytes, FOUR_MIB as u64);
    assert!(dead[0].truncated);
    assert!(body.starts_with(&dead[0].body), "the body's first bytes");

    // Listing carries no body unless asked.
    let response = api
        .request(Method::GET, "/v1/orgs/acme/dead-letters")
        .send()
        .await
        .expect("list");
    let text = response.text().await.expect("text");
    assert!(text.len() < 4096, "listing is {} bytes", text.len());
    let list: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let letter = &list["dead_letters"][0];
    assert_eq!(letter["body"], serde_json::Value::Null);
    assert_eq!(letter["body_bytes"], FOUR_MIB);
    assert_eq!(letter["truncated"], true);
    let (status, with_body) = api
        .call(Method::GET, "/v1/orgs/acme/dead-letters?include=body", None)
        .await;
    assert_eq!(status, 200);
    let shown = with_body["dead_letters"][0]["body"].as_str().expect("body");
    assert!(shown.len() <= cap && shown.starts_with(r#"{"event":"report_created""#));
    let (status, bad) = api
        .call(Method::GET, "/v1/orgs/acme/dead-letters?include=all", None)
        .await;
    assert_eq!((status, error_code(&bad)), (400, "invalid_query"));

    // A truncated letter cannot be replayed faithfully: refused, and it stays.
    let id = letter["id"].as_str().expect("id");
    let (status, result) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/dead-letters/replay",
            Some(json!({"ids": [id]})),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["replayed"], json!([]));
    assert_eq!(result["failed"][0]["id"], id);
    let error = result["failed"][0]["error"].as_str().expect("error");
    assert!(error.contains("first bytes"), "{error}");
    assert_eq!(h.dead_letters().len(), 1, "it stays archived");

    // Purge selects it without reading its body.
    let (status, purged) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/dead-letters/purge",
            Some(json!({"ids": [id]})),
        )
        .await;
    assert_eq!((status, purged["purged"].as_u64()), (200, Some(1)));
    eventually(WAIT, "the archive empty", || async {
        h.dead_letters().is_empty().then_some(())
    })
    .await;
    h.finish().await;
}
