//! Outbound safety (SSRF) through the real [`Deliverer`]: redirects are not followed,
//! names and literal addresses in refused ranges are refused before any connection,
//! loopback-only mode refuses other names before resolving them, and no proxy is taken
//! from the environment.
//!
//! "No connection" is proven by counting TCP accepts on loopback listeners, never HTTP
//! requests. Every address used here is on loopback, including those expected to be refused.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hookwire_core::{AttemptFailure, Outcome, TargetError, TargetPolicy};
use hookwire_http::{AttemptReport, Deliverer, DelivererConfig};
use hookwire_testkit::misbehaving::RawReceiver;
use hookwire_testkit::{Harness, Receiver, Reply, new_subscription};

const BODY: &[u8] = br#"{"event":"report_created","report_run_url":"https://mode.test/r/1"}"#;
const WAIT: Duration = Duration::from_secs(20);

fn deliverer(policy: TargetPolicy) -> Deliverer {
    Deliverer::new(DelivererConfig {
        policy,
        timeout: Duration::from_secs(5),
        ca_pem: None,
        retry_client_errors: false,
        proxy: None,
    })
    .expect("deliverer builds")
}

async fn attempt(deliverer: &Deliverer, url: &str) -> AttemptReport {
    let sub = new_subscription("acme", url, &["report_created"]);
    deliverer.attempt(&sub, "msg_ssrf", BODY).await
}

/// A refusal: no status, `TargetRefused`, dead-lettered rather than retried.
fn assert_refused(report: &AttemptReport, what: &str) {
    assert_eq!(
        report.failure,
        Some(AttemptFailure::TargetRefused),
        "{what}: {report:?}"
    );
    assert_eq!(report.outcome, Outcome::Permanent, "{what}");
    assert_eq!(report.status, None, "{what}");
}

/// The default policy with private targets off: what a production daemon runs.
fn production_policy() -> TargetPolicy {
    let policy = TargetPolicy::default();
    assert!(!policy.allow_private_targets && !policy.only_allowed_cidrs);
    policy
}

#[tokio::test]
async fn redirects_to_another_loopback_url_are_not_followed() {
    let second = Receiver::ok().await;
    let location = second.url();
    let first = Receiver::start(move |n, _| {
        // 301, 302, 303, 307, 308 in turn.
        let status = [301, 302, 303, 307, 308][n % 5];
        let mut reply = Reply::status(status);
        reply.headers.push(("location".into(), location.clone()));
        reply
    })
    .await;
    let deliverer = deliverer(TargetPolicy::loopback_only());
    for status in [301, 302, 303, 307, 308] {
        let report = attempt(&deliverer, &first.url()).await;
        assert_eq!(report.status, Some(status));
        assert_eq!(
            report.outcome,
            Outcome::Permanent,
            "a {status} is permanent"
        );
    }
    assert_eq!(first.requests().len(), 5);
    // Give a redirect that was (wrongly) followed in the background time to connect.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(second.accepts(), 0, "the redirect target got no connection");
}

#[tokio::test]
async fn a_redirect_is_dead_lettered_as_permanent_and_its_target_gets_nothing() {
    let h = Harness::start(|_| {}).await;
    let second = Receiver::ok().await;
    let location = second.url();
    let first = Receiver::start(move |_, _| {
        let mut reply = Reply::status(302);
        reply.headers.push(("location".into(), location.clone()));
        reply
    })
    .await;
    h.subscribe(&new_subscription("acme", &first.url(), &["report_created"]));
    h.publish(
        "acme",
        "report_created",
        "evt-redirect",
        "report_run_url",
        "https://mode.test/r/redirect",
    )
    .await;

    let dead = h.wait_dead_letters(1, WAIT).await;
    assert_eq!(dead[0].reason, "permanent_status");
    assert!(dead[0].detail.contains("302"), "{}", dead[0].detail);
    assert_eq!(first.requests().len(), 1, "a 3xx is not retried");
    assert_eq!(second.accepts(), 0, "the redirect target got no connection");
    h.finish().await;
}

#[tokio::test]
async fn a_name_resolving_to_a_refused_address_is_refused_before_connecting() {
    // `localhost` resolves (through /etc/hosts) to loopback, which the production policy
    // refuses: the filtering resolver drops every address, so nothing is connected to.
    let receiver = RawReceiver::ok().await;
    let report = attempt(
        &deliverer(production_policy()),
        &receiver.url_with_host("localhost"),
    )
    .await;
    assert_refused(&report, "localhost");
    let error = report.error.as_deref().unwrap_or_default();
    let expected = [
        TargetError::RefusedAddress {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            range: "loopback",
        },
        TargetError::RefusedAddress {
            addr: "::1".parse().expect("ip"),
            range: "loopback",
        },
    ]
    .map(|e| e.to_string());
    assert!(
        expected.iter().any(|e| e == error),
        "the attempt names the resolver's refusal, got `{error}`"
    );
    assert_eq!(receiver.accepts(), 0, "no TCP connection was accepted");
}

#[tokio::test]
async fn literal_loopback_in_every_spelling_is_refused_before_connecting() {
    let receiver = RawReceiver::ok().await;
    let port = receiver.port();
    let deliverer = deliverer(production_policy());
    for host in [
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::1]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::1]",
    ] {
        let url = format!("http://{host}:{port}/hook");
        let report = attempt(&deliverer, &url).await;
        assert_refused(&report, &url);
        assert!(
            report
                .error
                .as_deref()
                .is_some_and(|e| e.contains("is refused")),
            "{url}: {report:?}"
        );
    }
    assert_eq!(receiver.accepts(), 0, "no spelling reached the listener");
}

#[tokio::test]
async fn with_private_targets_allowed_the_same_receiver_is_reached() {
    // The control for the two tests above: the counting does see connections.
    let receiver = RawReceiver::ok().await;
    let policy = TargetPolicy {
        allow_private_targets: true,
        ..TargetPolicy::default()
    };
    let deliverer = deliverer(policy);
    let report = attempt(&deliverer, &receiver.url_with_host("localhost")).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!(receiver.accepts(), 1);
    let report = attempt(
        &deliverer,
        &format!("http://2130706433:{}/", receiver.port()),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!(receiver.accepts(), 2);
}

#[tokio::test]
async fn loopback_only_mode_refuses_other_names_without_resolving_them() {
    // A name that /etc/hosts maps to loopback would pass the filtering resolver (loopback
    // is allowed here), so refusing it proves the name was refused before any lookup.
    // Without such a name, a `.invalid` one (RFC 6761) stands in: it can never resolve.
    let name = loopback_alias().unwrap_or_else(|| "hookwire-ssrf-test.invalid".to_owned());
    let receiver = RawReceiver::ok().await;
    let deliverer = deliverer(TargetPolicy::loopback_only());
    let started = std::time::Instant::now();
    let report = attempt(&deliverer, &receiver.url_with_host(&name)).await;
    assert_refused(&report, &name);
    assert_eq!(
        report.error.as_deref(),
        Some(TargetError::RefusedHost(name.clone()).to_string().as_str()),
        "refused by name, before the resolver"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(receiver.accepts(), 0);

    // The same receiver by `localhost` and by a loopback literal is reached.
    for url in [receiver.url_with_host("localhost"), receiver.url()] {
        let report = attempt(&deliverer, &url).await;
        assert_eq!(report.outcome, Outcome::Delivered, "{url}: {report:?}");
    }
    assert_eq!(receiver.accepts(), 2);
}

/// A host name other than `localhost` that /etc/hosts maps to a loopback address.
fn loopback_alias() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let addr: IpAddr = fields.next()?.parse().ok()?;
        if !addr.is_loopback() {
            return None;
        }
        fields
            .find(|name| {
                !name.eq_ignore_ascii_case("localhost")
                    && name.parse::<IpAddr>().is_err()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            })
            .map(str::to_owned)
    })
}

/// Set in the child process that [`no_proxy_is_taken_from_the_environment`] spawns.
const PROXY_CHILD: &str = "HOOKWIRE_TEST_PROXY_CHILD";
/// The receiver URL the child delivers to.
const PROXY_TARGET: &str = "HOOKWIRE_TEST_PROXY_TARGET";
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[tokio::test]
async fn no_proxy_is_taken_from_the_environment() {
    // Proxy variables are process-wide, and tests in this binary run in parallel, so they
    // are set only in a child process that runs `proxy_child` alone.
    let proxy = RawReceiver::ok().await;
    let receiver = Receiver::ok().await;
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = tokio::process::Command::new(exe);
    child
        .args([
            "--exact",
            "ssrf::proxy_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env(PROXY_CHILD, "1")
        .env(PROXY_TARGET, receiver.url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .kill_on_drop(true);
    for var in PROXY_VARS {
        child.env(var, proxy.url_with_host("127.0.0.1"));
    }
    let output = tokio::time::timeout(WAIT, child.output())
        .await
        .expect("the child test finishes")
        .expect("the child test runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child test passed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The child's control client took the proxy from the environment; hookwire did not.
    assert_eq!(proxy.accepts(), 1, "only the control client used the proxy");
    assert_eq!(receiver.accepts(), 1, "hookwire connected directly");
    assert_eq!(receiver.requests().len(), 1);
}

/// Runs only as the child of [`no_proxy_is_taken_from_the_environment`].
#[tokio::test]
#[ignore = "runs as a child process of no_proxy_is_taken_from_the_environment"]
async fn proxy_child() {
    if std::env::var_os(PROXY_CHILD).is_none() {
        return;
    }
    let target = std::env::var(PROXY_TARGET).expect("the parent names the target");
    // Control: a client built with reqwest's defaults does use the environment's proxy.
    let control = reqwest::Client::new()
        .post(&target)
        .body("control")
        .send()
        .await
        .expect("the proxy answers the control client");
    assert_eq!(control.status().as_u16(), 200);
    let report = attempt(&deliverer(TargetPolicy::loopback_only()), &target).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
}
