//! Custom headers per webhook: sent with every request, secret ones sealed and hidden,
//! reserved and malformed ones refused.

use std::time::Duration;

use hookwire_testkit::tools::verify_with_standardwebhooks;
use hookwire_testkit::{Harness, Receiver};
use serde_json::{Value, json};

use crate::{Api, WEBHOOKS, webhook};

const WAIT: Duration = Duration::from_secs(20);
const SECRET_VALUE: &str = "Bearer s3cret-7f2a9c41";

/// Every file of the store's directory, concatenated.
fn store_bytes(h: &Harness) -> Vec<u8> {
    h.store.flush().expect("flush");
    let mut bytes = Vec::new();
    let mut dirs = vec![h.config.store.path.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("store dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                bytes.extend(std::fs::read(&path).expect("store file"));
            }
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn custom_headers_reach_the_receiver_and_secret_ones_stay_sealed_and_hidden() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let webhook = api
        .create(webhook(&receiver.url()).with(json!({
            "headers": {"X-Team": "reports-plain-5521", "X-Empty": ""},
            "secret_headers": {"Authorization": SECRET_VALUE},
        })))
        .await;
    let created = &webhook.answer;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert_eq!(
        created["headers"],
        json!({"x-team": "reports-plain-5521", "x-empty": ""})
    );
    assert_eq!(created["secret_headers"], json!(["authorization"]));
    assert!(!created.to_string().contains("s3cret"), "{created}");

    let test_event = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(test_event.header("x-team"), "reports-plain-5521");
    assert_eq!(test_event.header("authorization"), SECRET_VALUE);

    h.publish_report("hdr-1", "https://mode.test/1").await;
    let delivery = receiver.wait_for(2, WAIT).await.remove(1);
    assert_eq!(delivery.header("x-team"), "reports-plain-5521");
    assert!(delivery.headers.contains_key("x-empty"));
    assert_eq!(delivery.header("authorization"), SECRET_VALUE);
    assert_eq!(delivery.header("content-type"), "application/json");
    verify_with_standardwebhooks(&secret, &delivery).expect("the signature still verifies");

    let (_, fetched) = api.get(&webhook.path).await;
    let (_, listed) = api.get(WEBHOOKS).await;
    for answer in [&fetched, &listed["webhooks"][0]] {
        assert_eq!(
            answer["secret_headers"],
            json!(["authorization"]),
            "{answer}"
        );
        assert!(!answer.to_string().contains("s3cret"), "{answer}");
    }
    let on_disk = store_bytes(&h);
    assert!(
        contains(&on_disk, "reports-plain-5521"),
        "plain values are stored as they are"
    );
    assert!(
        !contains(&on_disk, "s3cret-7f2a9c41"),
        "secret values are sealed at rest"
    );

    // A PATCH sets, replaces and removes by name; the others stay, the secret one too.
    let (status, updated) = api
        .patch(
            &webhook.path,
            json!({"headers": {"X-Team": "ops", "x-empty": null, "X-New": "1"}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["headers"], json!({"x-new": "1", "x-team": "ops"}));
    assert_eq!(updated["secret_headers"], json!(["authorization"]));
    h.publish_report("hdr-2", "https://mode.test/2").await;
    let delivery = receiver.wait_for(3, WAIT).await.remove(2);
    assert_eq!(delivery.header("x-team"), "ops");
    assert_eq!(delivery.header("x-new"), "1");
    assert!(!delivery.headers.contains_key("x-empty"));
    assert_eq!(
        delivery.header("authorization"),
        SECRET_VALUE,
        "kept across the PATCH"
    );

    // A name moves between plain and secret; a null removes a secret one.
    let (status, updated) = api
        .patch(
            &webhook.path,
            json!({"secret_headers": {"x-team": "hidden-team", "authorization": null}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["headers"], json!({"x-new": "1"}));
    assert_eq!(updated["secret_headers"], json!(["x-team"]));
    h.finish().await;
}

/// One request per refused case; each answers 422 `invalid_headers` naming the problem,
/// and saves nothing.
#[tokio::test]
async fn reserved_and_malformed_headers_are_refused_one_by_one() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"headers": {"Webhook-Signature": "v1,x"}}),
            "reserved",
        ),
        (json!({"headers": {"webhook-id": "x"}}), "reserved"),
        (
            json!({"headers": {"Content-Type": "text/plain"}}),
            "reserved",
        ),
        (json!({"headers": {"Host": "example.com"}}), "reserved"),
        (json!({"headers": {"Connection": "close"}}), "reserved"),
        (
            json!({"headers": {"Transfer-Encoding": "chunked"}}),
            "reserved",
        ),
        (json!({"headers": {"Content-Length": "1"}}), "reserved"),
        (json!({"secret_headers": {"User-Agent": "me"}}), "reserved"),
        (json!({"headers": {"X Team": "a"}}), "header name"),
        (json!({"headers": {"": "a"}}), "header name"),
        (
            json!({"headers": {"x-a": "a\r\nx-injected: 1"}}),
            "visible ASCII",
        ),
        (
            json!({"secret_headers": {"x-a": "caf\u{e9}"}}),
            "visible ASCII",
        ),
        (json!({"headers": {"x-a": " padded"}}), "white space"),
        (json!({"headers": {"x-a": "v".repeat(1025)}}), "1024"),
        (
            json!({"headers": {"X-A": "1"}, "secret_headers": {"x-a": "2"}}),
            "given twice",
        ),
        (
            json!({"headers": (0..21).map(|i| (format!("x-{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "at most 20",
        ),
        (
            json!({"headers": (0..5).map(|i| (format!("x-{i}"), json!("v".repeat(1000)))).collect::<serde_json::Map<_, _>>()}),
            "4096",
        ),
    ];
    for (extra, says) in cases {
        let message = api
            .create_refused(
                webhook(&receiver.url()).with(extra.clone()),
                422,
                "invalid_headers",
            )
            .await;
        assert!(message.contains(says), "{extra}: {message}");
    }
    // Not a string: the body's shape is wrong.
    let not_a_string = webhook(&receiver.url()).with(json!({"headers": {"x-a": 1}}));
    api.create_refused(not_a_string, 422, "invalid_body").await;
    assert!(receiver.requests().is_empty(), "no test event was sent");
    assert!(
        h.store.list("acme").expect("list").is_empty(),
        "nothing was saved"
    );

    // On PATCH too, and the webhook is left as it was.
    let created = api
        .create(webhook(&receiver.url()).with(json!({"headers": {"x-a": "1"}})))
        .await;
    let fetched = api
        .patch_refused(
            &created.path,
            json!({"headers": {"x-b": "2", "webhook-timestamp": "0"}}),
            422,
            "invalid_headers",
        )
        .await;
    assert_eq!(fetched["headers"], json!({"x-a": "1"}));
    assert_eq!(fetched["version"], created.answer["version"]);
    h.finish().await;
}
