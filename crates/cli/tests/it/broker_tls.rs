//! `amqps://` to a RabbitMQ node of the test's own that trusts only a private CA and
//! requires a client certificate it signed: `serve`, `hookwire publish` and the Rust
//! producer connect with `amqp.tls_*` and an event is delivered end to end; another CA, no
//! client certificate, another CA's client certificate and a wrong server name are each
//! refused with the reason; files that cannot work are refused at load, naming the key.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use hookwire_amqp::{BrokerTls, BrokerTlsPem, Brokers, OutgoingEvent, Producer};
use hookwire_core::{Catalog, Config};
use hookwire_testkit::serve_child::seed_store;
use hookwire_testkit::tls::TestCa;
use hookwire_testkit::{
    Receiver, ServeChild, TlsBroker, new_subscription, test_config, unique_namespace,
};
use serde_json::json;

use crate::{hookwire, write_config};

const WAIT: Duration = Duration::from_secs(60);
/// The name the node's certificate carries besides `127.0.0.1`.
const BROKER_NAME: &str = "broker.hookwire.test";

/// PEM files in a directory of the test's own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path
    }

    /// A `serve` config for `broker` trusting `ca` and presenting `client` (certificate,
    /// key), with `acme`'s webhook to `receiver` seeded, and the file it is written to.
    fn serve_config(
        &self,
        broker: &TlsBroker,
        ca: &str,
        (cert, key): (&str, &str),
        receiver: &Receiver,
    ) -> (Config, PathBuf) {
        let mut config = test_config(&unique_namespace(), &self.dir.path().join("store"));
        config.amqp.url = broker.url();
        config.amqp.tls_ca_file = Some(self.write("ca.pem", ca));
        config.amqp.tls_client_certificate = Some(self.write("client.pem", cert));
        config.amqp.tls_client_key = Some(self.write("client.key", key));
        let webhook = new_subscription("acme", &receiver.url(), &["report_run_completed"]);
        seed_store(&config, &[webhook]).expect("seed");
        let path = write_config(&config, self.dir.path());
        (config, path)
    }

    /// `hookwire.toml` with `[amqp]` alone: `url` and the given `tls_*` keys.
    fn amqp_config(&self, url: &str, tls: &[(&str, &str)]) -> PathBuf {
        let mut text = format!(
            "[amqp]\nurl = \"{url}\"\nnamespace = \"{}\"\n",
            unique_namespace()
        );
        for (key, value) in tls {
            text.push_str(&format!("{key} = {:?}\n", value));
        }
        self.write("hookwire.toml", &text)
    }
}

/// `hookwire publish` of `acme`'s `report_run_completed` event `id` with `config`.
fn publish(config: &Path, id: &str) -> Output {
    hookwire()
        .args(["publish", "--config"])
        .arg(config)
        .args([
            "--org",
            "acme",
            "--event",
            "report_run_completed",
            "--id",
            id,
        ])
        .arg("--data")
        .arg(json!({"report_run_url": format!("https://mode.test/runs/{id}")}).to_string())
        .stdin(Stdio::null())
        .output()
        .expect("hookwire runs")
}

/// What `publish` wrote to stderr, after checking it failed.
fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "publish succeeded: {stderr}");
    stderr
}

#[tokio::test]
async fn serve_publish_and_the_producer_deliver_over_amqps_with_a_private_ca_and_a_client_certificate()
 {
    let ca = TestCa::new();
    let broker = TlsBroker::start(&ca, &[BROKER_NAME, "127.0.0.1"], &ca).expect("TLS node");
    let files = Files::new();
    let (cert, key) = ca.client_cert("hookwire");
    let receiver = Receiver::ok().await;
    let (config, path) = files.serve_config(&broker, &ca.pem(), (&cert, &key), &receiver);
    let log = files.dir.path().join("serve.log");
    let mut serve = ServeChild::spawn(Path::new(env!("CARGO_BIN_EXE_hookwire")), &path, &log, &[])
        .expect("serve starts");
    serve
        .wait_ready(WAIT)
        .await
        .expect("serve consumes over amqps");

    // The CLI, with serve's own file: the URL's host, 127.0.0.1, is checked.
    let out = publish(&path, "evt-tls-cli");
    assert!(
        out.status.success(),
        "publish over amqps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.wait_for(1, WAIT).await;
    assert!(
        String::from_utf8_lossy(&got[0].body).contains("evt-tls-cli"),
        "{:?}",
        got[0]
    );

    // The library, with PEM text in memory and the certificate's other name.
    let tls = BrokerTls::from_pem(BrokerTlsPem {
        ca: Some(&ca.pem()),
        client: Some((&cert, &key)),
        server_name: Some(BROKER_NAME),
    })
    .expect("TLS settings");
    let producer = Producer::connect_any(
        Brokers::one(&broker.url()).with_tls(Some(tls)),
        &config.amqp.namespace,
        "hookwire-tls-producer",
        Catalog::builtin(),
    )
    .await
    .expect("the producer connects over amqps");
    producer
        .publish(&OutgoingEvent {
            org: "acme".into(),
            event_type: "report_run_completed".into(),
            id: "evt-tls-producer".into(),
            data: serde_json::from_value(
                json!({"report_run_url": "https://mode.test/runs/evt-tls-producer"}),
            )
            .expect("a map"),
        })
        .await
        .expect("confirmed");
    producer.close().await.expect("close");
    let got = receiver.wait_for(2, WAIT).await;
    assert!(
        String::from_utf8_lossy(&got[1].body).contains("evt-tls-producer"),
        "{:?}",
        got[1]
    );
    serve.terminate(WAIT).await.expect("serve stops");
    drop(broker);
}

#[tokio::test]
async fn another_ca_no_client_certificate_and_a_wrong_server_name_are_refused_with_the_reason() {
    let ca = TestCa::new();
    let broker = TlsBroker::start(&ca, &[BROKER_NAME, "127.0.0.1"], &ca).expect("TLS node");
    let stranger = TestCa::new();
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.pem());
    let stranger_file = files.write("stranger-ca.pem", &stranger.pem());
    let (cert, key) = ca.client_cert("hookwire");
    let cert_file = files.write("client.pem", &cert);
    let key_file = files.write("client.key", &key);
    let (stranger_cert, stranger_key) = stranger.client_cert("hookwire");
    let stranger_cert_file = files.write("stranger.pem", &stranger_cert);
    let stranger_key_file = files.write("stranger.key", &stranger_key);
    let text = |p: &PathBuf| p.to_string_lossy().into_owned();
    let url = broker.url();
    let unreachable = "cannot connect to the broker at amqps://guest:***@127.0.0.1";

    // The platform's roots alone do not know the private CA.
    let config = files.amqp_config(
        &url,
        &[
            ("tls_client_certificate", &text(&cert_file)),
            ("tls_client_key", &text(&key_file)),
        ],
    );
    let stderr = refused(&publish(&config, "evt-platform-roots"));
    assert!(stderr.contains(unreachable), "{stderr}");
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");

    // Another CA.
    let config = files.amqp_config(
        &url,
        &[
            ("tls_ca_file", &text(&stranger_file)),
            ("tls_client_certificate", &text(&cert_file)),
            ("tls_client_key", &text(&key_file)),
        ],
    );
    let stderr = refused(&publish(&config, "evt-wrong-ca"));
    assert!(stderr.contains(unreachable), "{stderr}");
    // Both test CAs have one name, so rustls finds the other CA and its signature fails.
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");

    // No client certificate: the broker requires one.
    let config = files.amqp_config(&url, &[("tls_ca_file", &text(&ca_file))]);
    let stderr = refused(&publish(&config, "evt-no-client-cert"));
    assert!(stderr.contains(unreachable), "{stderr}");
    assert!(
        refused_by_broker(&stderr, "CertificateRequired"),
        "{stderr}"
    );

    // A client certificate of a CA the broker does not trust.
    let config = files.amqp_config(
        &url,
        &[
            ("tls_ca_file", &text(&ca_file)),
            ("tls_client_certificate", &text(&stranger_cert_file)),
            ("tls_client_key", &text(&stranger_key_file)),
        ],
    );
    let stderr = refused(&publish(&config, "evt-stranger-cert"));
    assert!(stderr.contains(unreachable), "{stderr}");
    assert!(refused_by_broker(&stderr, "UnknownCA"), "{stderr}");

    // A server name the broker's certificate does not carry.
    let config = files.amqp_config(
        &url,
        &[
            ("tls_ca_file", &text(&ca_file)),
            ("tls_client_certificate", &text(&cert_file)),
            ("tls_client_key", &text(&key_file)),
            ("tls_server_name", "rabbit.other.test"),
        ],
    );
    let stderr = refused(&publish(&config, "evt-wrong-name"));
    assert!(stderr.contains(unreachable), "{stderr}");
    assert!(
        stderr.contains("certificate not valid for name \"rabbit.other.test\""),
        "{stderr}"
    );

    // The same settings with the name it does carry connect: what was refused was only
    // the name.
    let config = files.amqp_config(
        &url,
        &[
            ("tls_ca_file", &text(&ca_file)),
            ("tls_client_certificate", &text(&cert_file)),
            ("tls_client_key", &text(&key_file)),
            ("tls_server_name", BROKER_NAME),
        ],
    );
    // No namespace is declared on the node, so the broker refuses the publish to its
    // missing exchange: an answer that only a connection that worked can get.
    let stderr = refused(&publish(&config, "evt-right-name"));
    assert!(!stderr.contains(unreachable), "{stderr}");
    assert!(stderr.contains("no exchange"), "{stderr}");
    drop(broker);
}

#[tokio::test]
async fn serve_with_settings_the_broker_refuses_retries_is_not_ready_and_loses_nothing() {
    let ca = TestCa::new();
    let broker = TlsBroker::start(&ca, &[BROKER_NAME, "127.0.0.1"], &ca).expect("TLS node");
    let stranger = TestCa::new();
    let files = Files::new();
    let (cert, key) = ca.client_cert("hookwire");
    let receiver = Receiver::ok().await;
    let (config, path) = files.serve_config(&broker, &stranger.pem(), (&cert, &key), &receiver);
    let ca_file = config.amqp.tls_ca_file.clone().expect("a CA file");
    let log = files.dir.path().join("serve.log");
    let binary = Path::new(env!("CARGO_BIN_EXE_hookwire"));
    let mut serve = ServeChild::spawn(binary, &path, &log, &[]).expect("serve starts");
    let api = serve
        .wait_started(WAIT)
        .await
        .expect("serve starts without a broker session");
    let health = crate::not_ready(api, WAIT, "/readyz 503 while the broker refuses").await;
    assert!(
        health.to_string().contains("not connected to the broker"),
        "{health}"
    );
    // Each attempt is refused, logged with the reason, and followed by another.
    hookwire_testkit::eventually(WAIT, "two refusals logged", || async {
        let refusals = serve
            .own_log()
            .lines()
            .filter(|l| {
                l.contains("Cannot open a broker session; retrying.")
                    && l.contains("invalid peer certificate")
            })
            .count();
        (refusals >= 2).then_some(())
    })
    .await;
    serve.check_alive().expect("serve keeps retrying");

    // Meanwhile a producer with the right CA publishes into the namespace.
    let right = Files::new();
    let mut fixed = config.clone();
    fixed.amqp.tls_ca_file = Some(right.write("ca.pem", &ca.pem()));
    let fixed_path = write_config(&fixed, right.dir.path());
    let out = hookwire()
        .args(["topology", "declare", "--config"])
        .arg(&fixed_path)
        .output()
        .expect("hookwire runs");
    assert!(
        out.status.success(),
        "topology declare: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = publish(&fixed_path, "evt-while-refused");
    assert!(
        out.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(receiver.accepts(), 0, "delivered without a session");

    // The operator replaces the CA file and restarts serve: the event waited in the broker.
    serve.terminate(WAIT).await.expect("serve stops");
    std::fs::write(&ca_file, ca.pem()).expect("replace the CA file");
    let mut serve = ServeChild::spawn(binary, &path, &log, &[]).expect("serve restarts");
    serve
        .wait_ready(WAIT)
        .await
        .expect("serve consumes with the right CA");
    let got = receiver.wait_for(1, WAIT).await;
    assert!(
        String::from_utf8_lossy(&got[0].body).contains("evt-while-refused"),
        "{:?}",
        got[0]
    );
    serve.terminate(WAIT).await.expect("serve stops");
    drop(broker);
}

/// `amqp.tls_*` keys and their values.
type Settings<'a> = Vec<(&'a str, String)>;

#[test]
fn tls_files_that_cannot_work_are_refused_at_load_naming_the_key() {
    let ca = TestCa::new();
    let files = Files::new();
    let (cert, _) = ca.client_cert("hookwire");
    let (_, other_key) = ca.client_cert("other");
    let cert_file = files.write("client.pem", &cert);
    let text = |p: &PathBuf| p.to_string_lossy().into_owned();
    // Never reached: each configuration is refused before any connection.
    let url = "amqps://guest:guest@127.0.0.1:9/%2f";
    let cases: [(&str, Settings, &str); 5] = [
        (
            "amqp.tls_ca_file",
            vec![("tls_ca_file", text(&files.dir.path().join("absent.pem")))],
            "cannot read",
        ),
        (
            "amqp.tls_ca_file",
            vec![(
                "tls_ca_file",
                text(&files.write(
                    "not-a-cert.pem",
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                )),
            )],
            "valid certificates",
        ),
        (
            "amqp.tls_client_key",
            vec![("tls_client_certificate", text(&cert_file))],
            "is required with amqp.tls_client_certificate",
        ),
        (
            "amqp.tls_client_key",
            vec![
                ("tls_client_certificate", text(&cert_file)),
                (
                    "tls_client_key",
                    text(&files.write("other.key", &other_key)),
                ),
            ],
            "does not match amqp.tls_client_certificate",
        ),
        (
            "amqp.tls_server_name",
            vec![("tls_server_name", "rabbit internal".into())],
            "not a DNS name",
        ),
    ];
    for (key, tls, reason) in cases {
        let tls: Vec<(&str, &str)> = tls.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = files.amqp_config(url, &tls);
        let stderr = refused(&publish(&config, "evt-refused"));
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(stderr.contains(reason), "{key}: {stderr}");
        assert!(!stderr.contains("cannot connect"), "{key}: {stderr}");
    }
    // A plain URL with TLS settings is a mistake, not silently plain.
    let config = files.amqp_config(
        "amqp://guest:guest@127.0.0.1:9/%2f",
        &[("tls_ca_file", &text(&cert_file))],
    );
    let stderr = refused(&publish(&config, "evt-plain"));
    assert!(
        stderr.contains("amqp.tls_ca_file") && stderr.contains("amqps://"),
        "{stderr}"
    );
}

/// Whether the broker refused the handshake with `alert`, or reset the connection: under
/// TLS 1.3 it judges the client's certificate after the client's side of the handshake
/// is done, so its alert can lose the race with the reset that follows it.
fn refused_by_broker(stderr: &str, alert: &str) -> bool {
    stderr.contains(alert) || stderr.contains("Connection reset by peer")
}
