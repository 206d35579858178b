//! Opening a connection: a URL that cannot be parsed and a broker that is not there are
//! clear errors, returned at once rather than retried behind the caller's back.

use std::time::Duration;

use hookwire_amqp::{Error, connect};

/// Long enough for any machine; a hang, not a slow answer, is what this guards against.
const HANG: Duration = Duration::from_secs(20);

async fn refused(url: &str) -> Error {
    tokio::time::timeout(HANG, connect(url, "hookwire-test-connect"))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} hung"))
        .expect_err("no connection")
}

#[tokio::test]
async fn a_bad_url_and_a_closed_port_are_clear_errors() {
    let bad = refused("amqp://guest:guest@[::1/%2f").await;
    assert!(matches!(bad, Error::Url(_)), "{bad}");
    assert!(bad.to_string().starts_with("AMQP URL: "), "{bad}");
    // Nothing listens on loopback port 1.
    let closed = refused("amqp://guest:guest@127.0.0.1:1/%2f").await;
    assert!(matches!(closed, Error::Amqp(_)), "{closed}");
    assert!(closed.to_string().contains("refused"), "{closed}");
}
