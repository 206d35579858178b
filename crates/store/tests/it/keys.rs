//! The store's key: checked at open by a sealed canary, rotated with the old keys kept
//! readable, and every secret resealed under the current one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use hookwire_store::{Change, Error, Store};

use super::{retry_lock, sub};

const A: [u8; 32] = [0xA; 32];
const B: [u8; 32] = [0xB; 32];

pub(crate) fn open(
    dir: &tempfile::TempDir,
    key: &[u8; 32],
    previous: &[[u8; 32]],
) -> hookwire_store::Result<Store> {
    retry_lock(|| Store::open_with_keys(dir.path(), 1 << 20, key, previous))
}

fn whsec(store: &Store, s: &hookwire_core::Subscription) -> String {
    store
        .get(&s.org, &s.id)
        .expect("readable")
        .expect("present")
        .keys[0]
        .secret
        .to_whsec()
}

pub(crate) fn sled_open(dir: &tempfile::TempDir) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(dir.path()) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("could not acquire lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled: {e}"),
        }
    }
}

#[test]
fn a_wrong_key_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An empty store: only the canary knows its key.
    drop(open(&dir, &A, &[]).expect("first open"));
    match open(&dir, &B, &[]) {
        Err(e @ Error::WrongKey) => assert!(e.to_string().contains("secrets.key"), "{e}"),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    open(&dir, &A, &[]).expect("the right key still opens it");
}

#[test]
fn a_rotated_key_reads_old_secrets_and_reseal_retires_the_old_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = sub("acme", &["report_created"]);
    {
        let store = open(&dir, &A, &[]).expect("opens");
        store.apply(Change::Upsert(old.clone())).expect("apply");
        store.flush().expect("flush");
    }
    let new = sub("acme", &["report_created"]);
    {
        let store = open(&dir, &B, &[A]).expect("B with A kept opens");
        assert_eq!(whsec(&store, &old), old.keys[0].secret.to_whsec());
        store.apply(Change::Upsert(new.clone())).expect("apply");
        store.flush().expect("flush");
    }
    // Not resealed yet: the store still needs A.
    assert!(matches!(open(&dir, &B, &[]), Err(Error::WrongKey)));
    {
        let store = open(&dir, &B, &[A]).expect("opens");
        assert_eq!(store.reseal().expect("reseals"), 2);
    }
    let store = open(&dir, &B, &[]).expect("B alone opens after the reseal");
    assert_eq!(whsec(&store, &old), old.keys[0].secret.to_whsec());
    assert_eq!(whsec(&store, &new), new.keys[0].secret.to_whsec());
    drop(store);
    assert!(matches!(open(&dir, &A, &[]), Err(Error::WrongKey)));
}

/// A record with its secrets as the first format sealed them: `nonce ‖ ciphertext`, the
/// subscription id alone as associated data, and no canary in the store.
fn write_first_format(dir: &tempfile::TempDir, key: &[u8; 32], s: &hookwire_core::Subscription) {
    {
        let store = open(dir, key, &[]).expect("opens");
        store.apply(Change::Upsert(s.clone())).expect("apply");
        store.flush().expect("flush");
    }
    let db = sled_open(dir);
    db.remove("secrets_canary").expect("no canary");
    let subs = db.open_tree("subscriptions").expect("tree");
    let (k, v) = subs.iter().next().expect("one record").expect("read");
    let mut record: serde_json::Value = serde_json::from_slice(&v).expect("json");
    let aead = XChaCha20Poly1305::new(key.into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let mut sealed = nonce.to_vec();
    sealed.extend(
        aead.encrypt(
            &nonce,
            Payload {
                msg: s.keys[0].secret.as_bytes(),
                aad: s.id.as_bytes(),
            },
        )
        .expect("seals"),
    );
    record["keys"][0]["sealed"] = BASE64.encode(sealed).into();
    subs.insert(k, serde_json::to_vec(&record).expect("json"))
        .expect("insert");
    db.flush().expect("flush");
}

#[test]
fn secrets_of_the_first_format_still_open_and_prove_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = sub("acme", &["report_created"]);
    write_first_format(&dir, &A, &s);
    // Without a canary, the first record's secret proves the key.
    assert!(matches!(open(&dir, &B, &[]), Err(Error::WrongKey)));
    {
        let store = open(&dir, &A, &[]).expect("the right key opens it");
        assert_eq!(whsec(&store, &s), s.keys[0].secret.to_whsec());
    }
    // Rotating from a first-format store: readable under the old key, resealed to B.
    write_first_format(&dir, &A, &s);
    {
        let store = open(&dir, &B, &[A]).expect("opens");
        assert_eq!(whsec(&store, &s), s.keys[0].secret.to_whsec());
    }
    // Opened under B with A kept, it still needs A until the reseal.
    assert!(matches!(open(&dir, &B, &[]), Err(Error::WrongKey)));
    let store = open(&dir, &B, &[A]).expect("opens");
    store.reseal().expect("reseals");
    drop(store);
    let store = open(&dir, &B, &[]).expect("opens");
    assert_eq!(whsec(&store, &s), s.keys[0].secret.to_whsec());
}

#[test]
fn a_sealed_secret_is_bound_to_its_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = sub("acme", &["report_created"]);
    s.keys[0].expires_at_ms = Some(1_000);
    {
        let store = open(&dir, &A, &[]).expect("opens");
        store.apply(Change::Upsert(s.clone())).expect("apply");
        store.flush().expect("flush");
    }
    {
        // Someone with write access to the files extends the expiry.
        let db = sled_open(&dir);
        let subs = db.open_tree("subscriptions").expect("tree");
        let (k, v) = subs.iter().next().expect("one record").expect("read");
        let mut record: serde_json::Value = serde_json::from_slice(&v).expect("json");
        record["keys"][0]["expires_at_ms"] = serde_json::Value::Null;
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
    assert!(read.keys.is_empty(), "the secret is not made to sign");
    assert!(!read.enabled);
}
