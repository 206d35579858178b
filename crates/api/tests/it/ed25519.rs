//! Ed25519 `v1a` signatures per webhook, checked with an independent implementation
//! (Python's `cryptography`) over the exact bytes received.

use std::time::Duration;

use hookwire_testkit::tools::{verify_ed25519_with_cryptography, verify_with_standardwebhooks};
use hookwire_testkit::{Harness, Receiver};
use serde_json::json;

use crate::{Api, WEBHOOKS, error_code, webhook};

const WAIT: Duration = Duration::from_secs(20);

fn kinds(signature: &str) -> Vec<&str> {
    signature
        .split(' ')
        .map(|s| s.split_once(',').map_or("", |(v, _)| v))
        .collect()
}

#[tokio::test]
async fn an_opted_in_webhook_signs_v1a_next_to_v1_and_rotates_with_a_grace() {
    let h = Harness::start(|c| c.secrets.rotation_grace = Duration::from_secs(2)).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let webhook = api
        .create(webhook(&receiver.url()).with(json!({"ed25519": true})))
        .await;
    let created = &webhook.answer;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let keys = created["public_keys"].as_array().expect("public keys");
    assert_eq!(keys.len(), 1, "{created}");
    let first = keys[0]["key"].as_str().expect("key").to_owned();
    assert!(first.starts_with("whpk_"), "{first}");
    assert!(keys[0]["valid_until"].is_null());

    let test_event = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(kinds(test_event.header("webhook-signature")), ["v1", "v1a"]);
    verify_ed25519_with_cryptography(&first, &test_event).expect("the test event verifies");

    h.publish_report("ed-1", "https://mode.test/1").await;
    let delivery = receiver.wait_for(2, WAIT).await.remove(1);
    verify_ed25519_with_cryptography(&first, &delivery).expect("v1a verifies");
    verify_with_standardwebhooks(&secret, &delivery)
        .expect("a v1 receiver is not disturbed by the v1a signature");

    // The same key is shown on every read; the private half never is.
    let (_, fetched) = api.get(&webhook.path).await;
    let (_, listed) = api.get(WEBHOOKS).await;
    assert_eq!(fetched["public_keys"][0]["key"], first.as_str());
    assert_eq!(
        listed["webhooks"][0]["public_keys"][0]["key"],
        first.as_str()
    );

    let (status, rotated) = api
        .post(&format!("{}/rotate-ed25519-key", webhook.path), None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["public_key"]
        .as_str()
        .expect("public key")
        .to_owned();
    assert!(second.starts_with("whpk_") && second != first);
    assert!(rotated["previous_valid_until"].is_string());
    let (_, fetched) = api.get(&webhook.path).await;
    assert_eq!(fetched["public_keys"][0]["key"], second.as_str());
    assert_eq!(fetched["public_keys"][1]["key"], first.as_str());
    assert!(fetched["public_keys"][1]["valid_until"].is_string());

    h.publish_report("ed-2", "https://mode.test/2").await;
    let during = receiver.wait_for(3, WAIT).await.remove(2);
    assert_eq!(
        kinds(during.header("webhook-signature")),
        ["v1", "v1a", "v1a"]
    );
    verify_ed25519_with_cryptography(&first, &during).expect("the old key signs in its grace");
    verify_ed25519_with_cryptography(&second, &during).expect("the new key signs");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.publish_report("ed-3", "https://mode.test/3").await;
    let after = receiver.wait_for(4, WAIT).await.remove(3);
    verify_ed25519_with_cryptography(&second, &after).expect("the new key signs");
    assert!(
        verify_ed25519_with_cryptography(&first, &after).is_err(),
        "the old key no longer signs after its grace"
    );
    // A tampered body does not verify with the independent implementation.
    let mut tampered = after.clone();
    tampered.body = String::from_utf8_lossy(&after.body)
        .replace("/3", "/4")
        .into_bytes()
        .into();
    assert!(verify_ed25519_with_cryptography(&second, &tampered).is_err());
    h.finish().await;
}

#[tokio::test]
async fn ed25519_is_turned_on_and_off_by_patch() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let created = api.create(webhook(&receiver.url()).unverified()).await;
    let path = created.path;
    assert_eq!(created.answer["public_keys"], json!([]));
    let (status, answer) = api.post(&format!("{path}/rotate-ed25519-key"), None).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(error_code(&answer), "ed25519_off");

    let (status, on) = api.patch(&path, json!({"ed25519": true})).await;
    assert_eq!(status, 200, "{on}");
    let key = on["public_keys"][0]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    // Turning it on again keeps the key receivers already have.
    let (_, again) = api.patch(&path, json!({"ed25519": true})).await;
    assert_eq!(again["public_keys"][0]["key"], key.as_str());
    h.publish_report("on", "https://mode.test/on").await;
    let signed = receiver.wait_for(1, WAIT).await.remove(0);
    verify_ed25519_with_cryptography(&key, &signed).expect("v1a verifies");

    let (status, off) = api.patch(&path, json!({"ed25519": false})).await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["public_keys"], json!([]));
    h.publish_report("off", "https://mode.test/off").await;
    let unsigned = receiver.wait_for(2, WAIT).await.remove(1);
    assert_eq!(kinds(unsigned.header("webhook-signature")), ["v1"]);

    let (status, answer) = api.patch(&path, json!({"ed25519": "yes"})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(error_code(&answer), "invalid_body");
    h.finish().await;
}
