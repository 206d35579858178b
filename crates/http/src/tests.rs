use super::*;

#[test]
fn a_cached_target_is_judged_as_when_it_was_parsed() {
    let deliverer = Deliverer::new(DelivererConfig {
        policy: TargetPolicy::loopback_only(),
        timeout: Duration::from_secs(1),
        ca_pem: None,
        retry_client_errors: false,
        proxy: None,
    })
    .expect("deliverer builds");
    for _ in 0..2 {
        let url = deliverer
            .check_literal_target("http://127.0.0.1:9/hook")
            .expect("loopback is allowed");
        assert_eq!(url.to_string(), "http://127.0.0.1:9/hook");
        // Nothing is sent: these are only judged.
        for refused in [
            "http://10.0.0.1/hook",
            "http://example.com/hook",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                deliverer.check_literal_target(refused).is_err(),
                "{refused}"
            );
        }
    }
    assert_eq!(
        deliverer.targets.read().unwrap().len(),
        1,
        "refusals are not kept"
    );
    for port in 0..=MAX_CACHED_TARGETS {
        deliverer
            .check_literal_target(&format!("http://127.0.0.1:{port}/"))
            .expect("loopback is allowed");
    }
    assert!(deliverer.targets.read().unwrap().len() <= MAX_CACHED_TARGETS);
}

#[tokio::test]
async fn a_lookup_that_never_answers_times_out() {
    let never = std::future::pending::<Result<Vec<SocketAddr>, BoxError>>();
    let error = within(Duration::from_millis(50), "stalled.example", never)
        .await
        .expect_err("a lookup that never answers fails");
    assert!(error.is::<DnsTimeout>(), "{error}");
    assert_eq!(
        error.to_string(),
        "DNS lookup of `stalled.example` did not answer within 0.05s"
    );
    let answered = within(Duration::from_secs(3), "h", async {
        Ok::<_, BoxError>(vec![SocketAddr::from(([127, 0, 0, 1], 80))])
    })
    .await
    .expect("an answer in time passes through");
    assert_eq!(answered.len(), 1);
}

#[tokio::test]
async fn a_refused_name_is_reported_without_its_address() {
    // `localhost` with loopback not allowed: resolved on this machine, never connected.
    let policy = TargetPolicy::default();
    let error = resolve_allowed_within(&policy, "localhost", Duration::from_secs(5))
        .await
        .expect_err("loopback is refused");
    let text = error.to_string();
    assert!(text.contains("loopback"), "{text}");
    assert!(
        !text.contains("127.0.0.1") && !text.contains("::1"),
        "{text}"
    );
}

#[test]
fn the_excerpt_never_exceeds_the_cap() {
    let cap = MAX_RESPONSE_BYTES;
    let euro = "€".repeat(cap);
    let cases: [(&[u8], usize); 5] = [
        (b"ok", 2),
        (&[b'a'; MAX_RESPONSE_BYTES], cap),
        // 1365 whole characters, then one byte of the next: that byte is dropped.
        (&euro.as_bytes()[..cap], cap - 1),
        // Every invalid byte becomes a three-byte U+FFFD.
        (&[0xff; MAX_RESPONSE_BYTES], cap - cap % 3),
        (&[0xff; 10], 30),
    ];
    for (body, len) in cases {
        let excerpt = excerpt_of(body);
        assert_eq!(excerpt.len(), len, "body of {} bytes", body.len());
    }
    assert!(
        excerpt_of(&euro.as_bytes()[..cap])
            .chars()
            .all(|c| c == '€')
    );
}

/// The lookup that webhook creation, test events and deliveries all go through gives up
/// on a resolver that never answers. (End to end this cannot be staged: the system
/// resolver reads its servers from `/etc/resolv.conf` only, machine-wide.)
#[tokio::test]
async fn a_resolver_that_never_answers_is_given_up_on_within_the_limit() {
    let policy = TargetPolicy::default();
    let stalled = |_: String| std::future::pending::<Result<Vec<SocketAddr>, BoxError>>();
    // The outer bound only keeps a regression from hanging the test run.
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        resolve_allowed_by(&policy, "stalled.test", Duration::from_millis(50), stalled),
    )
    .await
    .expect("the lookup gave up by itself")
    .expect_err("a lookup that never answers fails");
    assert!(error.is::<DnsTimeout>(), "{error}");
    let answered = resolve_allowed_by(&policy, "ok.test", Duration::from_secs(5), |_| async {
        Ok(vec![SocketAddr::from(([93, 184, 215, 14], 443))])
    })
    .await
    .expect("an answer in time is judged and passed on");
    assert_eq!(answered.len(), 1);
    let refused = resolve_allowed_by(&policy, "inside.test", Duration::from_secs(5), |_| async {
        Ok(vec![SocketAddr::from(([10, 1, 2, 3], 443))])
    })
    .await
    .expect_err("a private address is refused after the lookup");
    assert!(!refused.to_string().contains("10.1.2.3"), "{refused}");
}
