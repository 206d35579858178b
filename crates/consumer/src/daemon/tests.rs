use super::settle::caught;
use super::*;

#[tokio::test]
async fn a_panicking_handler_becomes_an_unprocessable_message() {
    let result = caught(async { panic!("boom") }).await;
    let Err(e @ Error::Panicked(_)) = result else {
        panic!("expected Panicked, got {result:?}");
    };
    assert!(e.to_string().contains("boom"));
    // Settled on its own, dead-lettered: never left unacked, never a session reset.
    assert_eq!(e.failure(), Failure::Poison);
    assert!(caught(async { Ok(()) }).await.is_ok());
}

#[test]
fn failures_are_classified_by_kind() {
    let store = |e| Error::Store(e);
    assert_eq!(
        store(hookwire_store::Error::Unseal).failure(),
        Failure::Poison
    );
    assert_eq!(
        store(hookwire_store::Error::Corrupt("x".into())).failure(),
        Failure::Poison
    );
    assert_eq!(
        store(hookwire_store::Error::Flush("disk full".into())).failure(),
        Failure::Transient
    );
    assert_eq!(
        store(hookwire_store::Error::WriterStopped).failure(),
        Failure::Transient
    );
    let nacked = hookwire_amqp::Error::Nacked {
        exchange: "x".into(),
        routing_key: "k".into(),
    };
    assert_eq!(Error::Broker(nacked).failure(), Failure::Transient);
    let timeout = hookwire_amqp::Error::ConfirmTimeout(Duration::from_secs(1));
    assert_eq!(Error::Broker(timeout).failure(), Failure::Transient);
    let closed = lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
        lapin::ChannelState::Closed,
        "basic.publish",
    ));
    assert_eq!(Error::Amqp(closed).failure(), Failure::ChannelLost);
}
