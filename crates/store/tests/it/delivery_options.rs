//! A webhook's custom headers, Ed25519 keys and filter in the store: secret values sealed
//! like the signing secret, listings that open nothing, and records written before these
//! fields existed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::time::Duration;

use hookwire_core::{CustomHeader, Ed25519Key, Filter, RetryPolicy};
use hookwire_store::{Change, Error};

use super::keys::{open, sled_open};
use super::sub;

const A: [u8; 32] = [0x1A; 32];
const B: [u8; 32] = [0x1B; 32];
const SECRET_VALUE: &str = "Bearer s3cret-header-91b";

fn with_options() -> hookwire_core::Subscription {
    let mut s = sub("acme", &["report_created"]);
    s.headers = vec![
        CustomHeader {
            name: "authorization".into(),
            value: SECRET_VALUE.into(),
            secret: true,
        },
        CustomHeader {
            name: "x-team".into(),
            value: "reports".into(),
            secret: false,
        },
    ];
    s.rotate_ed25519(Ed25519Key::generate().expect("rng"), 1, 1);
    s.filter = Some(Filter::parse("body.tags.exists(t, t == 'q3')").expect("filter"));
    s.retry = RetryPolicy {
        schedule: Some(vec![Duration::from_secs(5), Duration::from_secs(30)]),
        max_age: Some(Duration::from_secs(3600)),
    };
    s
}

fn on_disk(dir: &tempfile::TempDir, needle: &[u8]) -> bool {
    std::fs::read_dir(dir.path())
        .expect("read dir")
        .flatten()
        .filter(|e| e.path().is_file())
        .any(|e| {
            let bytes = std::fs::read(e.path()).expect("read");
            bytes.windows(needle.len()).any(|w| w == needle)
        })
}

#[test]
fn options_round_trip_with_their_secrets_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = with_options();
    let seed = *s.ed25519_keys[0]
        .private
        .as_ref()
        .expect("private")
        .as_bytes();
    {
        let store = open(&dir, &A, &[]).expect("opens");
        store.apply(Change::Upsert(s.clone())).expect("apply");
        store.flush().expect("flush");
        let read = store.get("acme", &s.id).expect("get").expect("present");
        assert_eq!(read.headers, s.headers);
        assert_eq!(read.ed25519_keys, s.ed25519_keys);
        assert_eq!(read.filter, s.filter);
        assert_eq!(read.retry, s.retry);
        // A listing opens nothing: public keys and names only.
        let page = store.list_page("acme", None, 10).expect("page");
        let listed = &page.items[0];
        assert_eq!(listed.ed25519_keys[0].public, s.ed25519_keys[0].public);
        assert!(listed.ed25519_keys[0].private.is_none());
        assert_eq!(listed.headers[0].name, "authorization");
        assert!(listed.headers[0].secret && listed.headers[0].value.is_empty());
        assert_eq!(listed.headers[1].value, "reports");
        assert_eq!(listed.filter, s.filter);
        assert_eq!(listed.retry, s.retry);
    }
    assert!(
        on_disk(&dir, b"reports"),
        "plain header values are stored as they are"
    );
    for needle in [
        SECRET_VALUE.as_bytes(),
        &seed[..],
        BASE64.encode(seed).as_bytes(),
    ] {
        assert!(!on_disk(&dir, needle), "a secret is on disk in the clear");
    }
    // A key rotation's reseal moves them to the new key too.
    {
        let store = open(&dir, &B, &[A]).expect("opens");
        store.reseal().expect("reseals");
    }
    let store = open(&dir, &B, &[]).expect("opens under the new key alone");
    let read = store.get("acme", &s.id).expect("get").expect("present");
    assert_eq!(read.headers, s.headers);
    assert_eq!(read.ed25519_keys, s.ed25519_keys);
}

#[test]
fn a_sealed_header_value_is_bound_to_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = with_options();
    {
        let store = open(&dir, &A, &[]).expect("opens");
        store.apply(Change::Upsert(s.clone())).expect("apply");
        store.flush().expect("flush");
    }
    {
        // Someone with write access to the files sends the secret under another name.
        let db = sled_open(&dir);
        let subs = db.open_tree("subscriptions").expect("tree");
        let (k, v) = subs.iter().next().expect("one record").expect("read");
        let mut record: serde_json::Value = serde_json::from_slice(&v).expect("json");
        assert!(record["headers"][0]["value"].is_null(), "{record}");
        record["headers"][0]["name"] = "x-leak".into();
        subs.insert(k, serde_json::to_vec(&record).expect("json"))
            .expect("insert");
        db.flush().expect("flush");
    }
    // It no longer opens: the webhook reads as broken, never with the moved secret.
    let store = open(&dir, &A, &[]).expect("opens");
    let read = store.get("acme", &s.id).expect("read").expect("listed");
    assert!(
        read.broken_reason
            .as_deref()
            .is_some_and(|r| r.contains(&Error::Unseal.to_string())),
        "{:?}",
        read.broken_reason
    );
    assert!(
        read.headers.is_empty(),
        "no header value is shown: {:?}",
        read.headers
    );
    assert!(!read.enabled);
}

#[test]
fn records_written_before_these_fields_read_without_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = sub("acme", &["report_created"]);
    {
        let store = open(&dir, &A, &[]).expect("opens");
        store.apply(Change::Upsert(s.clone())).expect("apply");
        store.flush().expect("flush");
    }
    {
        let db = sled_open(&dir);
        let subs = db.open_tree("subscriptions").expect("tree");
        let (_, v) = subs.iter().next().expect("one record").expect("read");
        let record: serde_json::Value = serde_json::from_slice(&v).expect("json");
        let fields = record.as_object().expect("object");
        // Left out at their defaults, as records written before them lack them.
        for field in [
            "ed25519_keys",
            "headers",
            "filter",
            "version",
            "disabled_reason",
        ] {
            assert!(!fields.contains_key(field), "{field} is written: {record}");
        }
        assert!(
            fields.contains_key("max_concurrency"),
            "a set field is kept"
        );
    }
    let store = open(&dir, &A, &[]).expect("opens");
    let read = store.get("acme", &s.id).expect("get").expect("present");
    assert!(read.headers.is_empty() && read.ed25519_keys.is_empty() && read.filter.is_none());
    assert_eq!(read.keys, s.keys);
    assert_eq!(
        store
            .subscribers("acme", "report_created")
            .expect("subscribers")
            .len(),
        1
    );
}

#[test]
fn a_client_key_is_sealed_and_a_listing_reads_the_certificate_without_it() {
    use hookwire_core::client_tls::{ClientIdentity, ClientKey, ClientTls};
    const KEY_BODY: &str = "Y2xpZW50LWtleS1ib2R5LTQ0Nw==";
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = sub("acme", &["report_created"]);
    s.client_tls = ClientTls {
        identity: Some(ClientIdentity {
            cert_pem: "-----BEGIN CERTIFICATE-----\nY2VydC1ib2R5\n-----END CERTIFICATE-----\n"
                .into(),
            key: Some(ClientKey::new(format!(
                "-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"
            ))),
        }),
        ca_pem: Some(
            "-----BEGIN CERTIFICATE-----\nY2EtYm9keQ==\n-----END CERTIFICATE-----\n".into(),
        ),
    };
    {
        let store = open(&dir, &A, &[]).expect("opens");
        store.apply(Change::Upsert(s.clone())).expect("apply");
        store.flush().expect("flush");
        let read = store.get("acme", &s.id).expect("get").expect("present");
        assert_eq!(read.client_tls, s.client_tls);
        let page = store.list_page("acme", None, 10).expect("page");
        let listed = page.items[0]
            .client_tls
            .identity
            .as_ref()
            .expect("identity");
        assert!(listed.key.is_none(), "a listing opens no key");
        assert_eq!(page.items[0].client_tls.ca_pem, s.client_tls.ca_pem);
    }
    assert!(
        on_disk(&dir, b"Y2VydC1ib2R5"),
        "certificates are stored as they are"
    );
    assert!(
        !on_disk(&dir, KEY_BODY.as_bytes()),
        "the key is on disk in the clear"
    );
    {
        let store = open(&dir, &B, &[A]).expect("opens");
        store.reseal().expect("reseals");
    }
    let store = open(&dir, &B, &[]).expect("opens under the new key alone");
    let read = store.get("acme", &s.id).expect("get").expect("present");
    assert_eq!(read.client_tls, s.client_tls);
}
