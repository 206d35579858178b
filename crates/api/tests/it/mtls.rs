//! A webhook's client certificate, key and CA bundle through the API: the test event on
//! create already presents the certificate; answers show what the certificate says and
//! never the key; bad PEM and a key that does not match are refused with 422.

use hookwire_testkit::tls::TestCa;
use hookwire_testkit::{Harness, Receiver};
use serde_json::{Value, json};

use crate::{Api, webhook};

/// No answer may carry any part of the private key.
fn assert_no_key(answer: &Value, key_pem: &str) {
    let text = answer.to_string();
    let body = key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .expect("a key line");
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains(body),
        "{text}"
    );
}

#[tokio::test]
async fn the_test_event_presents_the_client_certificate_and_answers_never_show_the_key() {
    let (server_ca, client_ca) = (TestCa::new(), TestCa::new());
    let receiver = Receiver::https_requiring_client_cert(&server_ca, &client_ca).await;
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let (cert, key) = client_ca.client_cert("acme-webhooks");

    // Without the certificate, the receiver refuses the test event's handshake.
    let message = api
        .create_refused(
            webhook(&receiver.url()).with(json!({"ca_certificates": server_ca.pem()})),
            422,
            "test_event_failed",
        )
        .await;
    assert!(message.to_lowercase().contains("alert"), "{message}");

    let created = api
        .create(webhook(&receiver.url()).with(json!({
            "client_certificate": cert,
            "client_key": key,
            "ca_certificates": server_ca.pem(),
        })))
        .await;
    assert_eq!(receiver.requests().len(), 1, "the test event got through");
    let shown = &created.answer["client_certificate"];
    assert_eq!(shown["subject"], "CN=acme-webhooks", "{shown}");
    assert!(
        shown["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{shown}"
    );
    assert_eq!(
        shown["fingerprint_sha256"].as_str().map(str::len),
        Some(32 * 3 - 1),
        "{shown}"
    );
    assert_eq!(
        created.answer["ca_certificates"][0]["subject"],
        "CN=hookwire test CA"
    );
    assert_no_key(&created.answer, &key);
    let (status, got) = api.get(&created.path).await;
    assert_eq!(status, 200);
    assert_eq!(got["client_certificate"], *shown);
    assert_no_key(&got, &key);
    let (_, listed) = api.get(crate::WEBHOOKS).await;
    assert_no_key(&listed, &key);

    // Test on demand with the stored (sealed) key, then remove the certificate.
    let (status, tested) = api
        .post(&format!("{}/test", created.path), None::<Value>)
        .await;
    assert_eq!(
        (status, &tested["delivered"]),
        (200, &json!(true)),
        "{tested}"
    );
    let (status, patched) = api
        .patch(&created.path, json!({"client_certificate": null}))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["client_certificate"], Value::Null);
    let (_, tested) = api
        .post(&format!("{}/test", created.path), None::<Value>)
        .await;
    assert_eq!(tested["delivered"], json!(false), "{tested}");
    h.finish().await;
}

#[tokio::test]
async fn bad_pem_and_a_key_that_does_not_match_are_refused_with_422() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let ca = TestCa::new();
    let (cert, key) = ca.client_cert("acme-webhooks");
    let (_, other_key) = ca.client_cert("someone-else");
    let url = receiver.url();
    let cases = [
        (
            json!({"client_certificate": "not a certificate", "client_key": key}),
            "invalid_client_certificate",
            "no PEM certificate",
        ),
        (
            json!({"client_certificate": cert, "client_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
            "invalid_client_certificate",
            "client_key",
        ),
        (
            json!({"client_certificate": cert, "client_key": other_key}),
            "invalid_client_certificate",
            "does not match",
        ),
        (
            json!({"client_certificate": cert}),
            "invalid_client_certificate",
            "needs its client_key",
        ),
        (
            json!({"client_certificate": format!("{cert}{key}"), "client_key": key}),
            "invalid_client_certificate",
            "holds a private key",
        ),
        (
            json!({"ca_certificates": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"}),
            "invalid_ca_certificates",
            "not X.509",
        ),
    ];
    for (fields, code, says) in cases {
        let message = api
            .create_refused(webhook(&url).with(fields.clone()).unverified(), 422, code)
            .await;
        assert!(message.contains(says), "{fields}: {message}");
        assert!(!message.contains("PRIVATE KEY-----\n"), "{message}");
    }
    assert!(receiver.requests().is_empty(), "nothing refused was tested");

    let created = api.create(webhook(&url).unverified()).await;
    api.patch_refused(
        &created.path,
        json!({"client_certificate": cert, "client_key": other_key}),
        422,
        "invalid_client_certificate",
    )
    .await;
    h.finish().await;
}
