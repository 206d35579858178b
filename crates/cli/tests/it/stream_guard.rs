//! What anyone who can publish to the vhost's default exchange sends to a replication
//! stream (`<ns>.changes`, `<ns>.attempts`, `<ns>.payloads`), published with lapin
//! straight to the stream queue as an attacker would: forged, replayed, truncated and
//! unsealed entries are refused and counted, the node moves past them, and its state is
//! what the real writes made it. An authentic entry the API would refuse is refused too,
//! and an authentic entry of a version this build does not know stops the node there.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use hookwire_amqp::envelope::{Origin, StreamKey, VERSION};
use hookwire_amqp::{Publisher, stream};
use hookwire_store::{AttemptQuery, AttemptRecord, Entry, Payload};
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver, eventually};
use lapin::BasicProperties;
use lapin::options::BasicAckOptions;
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);
/// A stream read from its first message is read whole once it is quiet for this long.
const QUIET: Duration = Duration::from_secs(2);

/// One replicated node, in process, and what an attacker and a test see of it.
struct Node {
    harness: Harness,
    http: reqwest::Client,
    /// The stream key the node derives from the test `secrets.key`: what a node with a
    /// laxer configuration (or an older build) would seal with.
    key: StreamKey,
}

impl Node {
    async fn start() -> Self {
        let harness = Harness::start(|c| c.replication.enabled = true).await;
        let key = StreamKey::derive(&harness.config.secrets_key().expect("a key"));
        Self {
            harness,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(WAIT)
                .build()
                .expect("client"),
            key,
        }
    }

    fn stream(&self, kind: &str) -> String {
        format!("{}.{kind}", self.harness.namespace())
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.harness.api_url()))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A webhook of `acme` at `url`, created without a test event.
    async fn create(&self, url: &str) -> String {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/v1/orgs/acme/webhooks?verify=false",
                Some(
                    json!({"url": url, "description": "first", "events": ["report_run_completed"]}),
                ),
            )
            .await;
        assert_eq!(status, 201, "create: {body}");
        body["id"].as_str().expect("an id").to_owned()
    }

    /// Sets the webhook's description through the API: answered once this node applied
    /// it, so every entry before it in the stream has been read by then.
    async fn describe(&self, id: &str, description: &str) {
        let (status, body) = self
            .request(
                reqwest::Method::PATCH,
                &format!("/v1/orgs/acme/webhooks/{id}"),
                Some(json!({"description": description})),
            )
            .await;
        assert_eq!(status, 200, "update: {body}");
    }

    /// Every message of the `kind` stream, from its first.
    async fn messages(&self, kind: &str) -> Vec<Vec<u8>> {
        let channel = self
            .harness
            .broker
            .connection()
            .create_channel()
            .await
            .expect("channel");
        let mut consumer = stream::consume_from(&channel, &self.stream(kind), None, 64)
            .await
            .expect("consume");
        let mut messages = Vec::new();
        while let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.next()).await {
            let delivery = delivery.expect("a delivery");
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            messages.push(delivery.data);
        }
        let _ = channel.close(200, "read".into()).await;
        messages
    }

    /// Publishes `raw` to the `kind` stream through the default exchange, confirmed: what
    /// any user of the vhost can do.
    async fn publish(&self, kind: &str, raw: &[u8]) {
        let publisher = Publisher::open(self.harness.broker.connection(), WAIT)
            .await
            .expect("a confirm channel");
        publisher
            .publish("", &self.stream(kind), raw, BasicProperties::default())
            .await
            .expect("the stream takes it");
        let _ = publisher.channel().close(200, "published".into()).await;
    }

    /// `hookwire_stream_entries_refused_total{stream=kind}` by reason. Each test refuses
    /// on one stream only, so the process-wide counters are its own.
    async fn refused(&self, kind: &str) -> BTreeMap<String, f64> {
        let text = self.harness.metrics().await;
        text.lines()
            .filter(|l| {
                l.starts_with("hookwire_stream_entries_refused_total{")
                    && l.contains(&format!("stream=\"{kind}\""))
            })
            .filter_map(|l| {
                let reason = l.split("reason=\"").nth(1)?.split('"').next()?;
                Some((reason.to_owned(), l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    }

    /// How many of each reason were refused since `before`.
    async fn refused_since(
        &self,
        kind: &str,
        before: &BTreeMap<String, f64>,
    ) -> Vec<(String, f64)> {
        self.refused(kind)
            .await
            .into_iter()
            .map(|(reason, n)| {
                let since = n - before.get(&reason).copied().unwrap_or(0.0);
                (reason, since)
            })
            .filter(|(_, n)| *n > 0.0)
            .collect()
    }

    /// `raw` opened with the node's key: what the stream carries inside the envelope.
    fn body(&self, kind: &str, raw: &[u8]) -> Vec<u8> {
        self.key
            .open(&self.stream(kind), raw)
            .expect("a sealed message")
            .body
            .to_vec()
    }

    /// The authentic entry of the node's first webhook's creation, as the changes stream
    /// carries it, and its body.
    async fn create_entry(&self) -> (Vec<u8>, Value) {
        let raw = self
            .messages("changes")
            .await
            .into_iter()
            .find(|raw| {
                Entry::from_bytes(&self.body("changes", raw)).is_ok_and(|e| e.kind() == "create")
            })
            .expect("the create entry");
        let body = serde_json::from_slice(&self.body("changes", &raw)).expect("JSON");
        (raw, body)
    }

    /// `/readyz`'s problems once it answers 503 with problems that `named` accepts.
    async fn unready(&self, what: &str, named: impl Fn(&[String]) -> bool) -> Vec<String> {
        eventually(WAIT, &format!("/readyz to name {what}"), || async {
            let (status, body) = self.request(reqwest::Method::GET, "/readyz", None).await;
            let problems: Vec<String> = body["problems"]
                .as_array()?
                .iter()
                .filter_map(|p| Some(p.as_str()?.to_owned()))
                .collect();
            (status == 503 && named(&problems)).then_some(problems)
        })
        .await
    }

    /// The last batch of the `kind` stream, and its body as `alter` changes it.
    async fn altered_batch(
        &self,
        kind: &str,
        alter: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> (Vec<u8>, Vec<u8>) {
        let batch = self.messages(kind).await.pop().expect("the batch");
        let altered = alter(&self.body(kind, &batch));
        (batch, altered)
    }

    /// Publishes `acme`'s `report_run_completed` event `id`.
    async fn publish_run(&self, id: &str) {
        self.harness
            .publish(
                "acme",
                "report_run_completed",
                id,
                "report_run_url",
                &format!("https://mode.test/{id}"),
            )
            .await;
    }

    /// What the store holds of webhook `id` of `acme`.
    fn webhook(&self, id: &str) -> Option<hookwire_core::Subscription> {
        self.harness
            .store
            .get("acme", &id.parse().expect("uuid"))
            .expect("read")
    }

    /// The attack on the `kind` stream: the [`forgeries`] of the authentic `original`
    /// (whose body the attacker changed to `altered`), then one copy of `original`.
    /// `settle` makes the node read past them; then each must have been refused and
    /// counted. Returns what `settle` returned, and the counters from before the attack.
    async fn attack<T>(
        &self,
        kind: &str,
        original: &[u8],
        altered: &[u8],
        settle: impl Future<Output = T>,
    ) -> (T, BTreeMap<String, f64>) {
        let before = self.refused(kind).await;
        for raw in forgeries(self, kind, original, altered) {
            self.publish(kind, &raw).await;
        }
        self.publish(kind, original).await;
        let settled = settle.await;
        let expected: Vec<(String, f64)> = vec![
            ("forged".into(), 2.0),
            ("malformed".into(), 1.0),
            ("replayed".into(), 1.0),
            ("unsealed".into(), 1.0),
        ];
        assert_eq!(self.refused_since(kind, &before).await, expected);
        (settled, before)
    }

    /// `body` sealed for the `kind` stream by a writer session of its own.
    fn sealed(&self, kind: &str, seq: u64, body: &[u8], session: Uuid) -> Vec<u8> {
        let origin = Origin {
            node: "laxer-node".into(),
            session,
            seq,
        };
        self.key.seal(&self.stream(kind), &origin, body)
    }
}

/// The attacker's variants of an authentic message: sealed under a key of their own, one
/// byte of it changed, cut short, and its body alone, without the envelope.
fn forgeries(node: &Node, kind: &str, original: &[u8], altered_body: &[u8]) -> Vec<Vec<u8>> {
    let own_key = StreamKey::derive(&[0x5a; 32]);
    let origin = Origin {
        node: "node-1".into(),
        session: Uuid::now_v7(),
        seq: 0,
    };
    let mut flipped = original.to_vec();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    vec![
        own_key.seal(&node.stream(kind), &origin, altered_body),
        flipped,
        original[..original.len() - 40].to_vec(),
        altered_body.to_vec(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_truncated_changes_are_refused_and_counted() {
    let node = Node::start().await;
    let id = node.create("http://127.0.0.1:9/hook").await;
    node.describe(&id, "second").await;
    // What the issue reproduced: the entry, its URL changed and its `op` made an upsert.
    let (create, mut altered) = node.create_entry().await;
    altered["change"]["op"] = json!("upsert");
    altered["change"]["webhook"]["url"] = json!("http://127.0.0.1:9/attacker");
    let altered = serde_json::to_vec(&altered).expect("JSON");

    // Its copy would put the first description back.
    let ((), before) = node
        .attack("changes", &create, &altered, node.describe(&id, "third"))
        .await;
    let webhook = node.webhook(&id).expect("kept");
    assert_eq!(webhook.url, "http://127.0.0.1:9/hook");
    assert_eq!(webhook.description, "third");
    assert_eq!(node.harness.store.list("acme").expect("list").len(), 1);

    // The sequences taken are kept with the store: after a restart a copy is still one.
    let mut node = node;
    node.harness.stop_daemon().await.expect("stops");
    node.harness.restart_daemon().await;
    node.publish("changes", &create).await;
    node.describe(&id, "fourth").await;
    let webhook = node.webhook(&id).expect("kept");
    assert_eq!(webhook.description, "fourth");
    let after = node.refused_since("changes", &before).await;
    assert!(after.contains(&("replayed".into(), 2.0)), "{after:?}");
    node.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authentic_change_the_api_would_refuse_is_refused_on_apply() {
    let node = Node::start().await;
    let id = node.create("http://127.0.0.1:9/hook").await;
    let (_, entry) = node.create_entry().await;
    // Each a new webhook the API refuses: a target outside the policy (the test policy
    // allows loopback only), a reserved header, a filter that does not parse.
    let refused_ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let mut bad = Vec::new();
    for (i, new_id) in refused_ids.iter().enumerate() {
        let mut e = entry.clone();
        e["id"] = json!(Uuid::now_v7());
        let webhook = &mut e["change"]["webhook"];
        webhook["id"] = json!(new_id);
        // Its sealed keys are bound to the webhook they were sealed for.
        webhook["keys"] = json!([]);
        match i {
            0 => webhook["url"] = json!("http://10.1.2.3/hook"),
            1 => webhook["headers"] = json!([{"name": "host", "value": "elsewhere.test"}]),
            _ => webhook["filter"] = json!("body.a =="),
        }
        bad.push(serde_json::to_vec(&e).expect("JSON"));
    }
    let before = node.refused("changes").await;
    let session = Uuid::now_v7();
    for (seq, body) in (0u64..).zip(&bad) {
        node.publish("changes", &node.sealed("changes", seq, body, session))
            .await;
    }
    node.describe(&id, "after").await;

    for refused in &refused_ids {
        assert!(
            node.harness
                .store
                .get("acme", refused)
                .expect("read")
                .is_none()
        );
    }
    assert_eq!(node.harness.store.list("acme").expect("list").len(), 1);
    assert_eq!(
        node.refused_since("changes", &before).await,
        vec![("invalid".into(), 3.0)]
    );
    node.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_truncated_attempt_batches_are_refused_and_counted() {
    let node = Node::start().await;
    let receiver = Receiver::ok().await;
    let id: Uuid = node.create(&receiver.url()).await.parse().expect("uuid");
    let attempts = |n: usize| {
        let store = node.harness.store.clone();
        async move {
            let page = store
                .attempts(
                    &id,
                    &AttemptQuery {
                        limit: 100,
                        ..AttemptQuery::default()
                    },
                )
                .expect("attempts");
            (page.items.len() >= n).then_some(page.items)
        }
    };
    node.publish_run("evt-1").await;
    eventually(WAIT, "the first attempt", || attempts(1)).await;
    let (batch, altered) = node
        .altered_batch("attempts", |body| {
            let mut altered = AttemptRecord::decode_batch(body).expect("a batch");
            altered[0].event_id = "evt-forged".into();
            AttemptRecord::encode_batch(&altered).expect("encoded")
        })
        .await;

    let (listed, _) = node
        .attack("attempts", &batch, &altered, async {
            node.publish_run("evt-2").await;
            eventually(WAIT, "the second attempt", || attempts(2)).await
        })
        .await;
    let events: Vec<&str> = listed.iter().map(|a| a.event_id.as_str()).collect();
    assert_eq!(events, ["evt-1", "evt-2"]);
    node.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_truncated_payload_batches_are_refused_and_counted() {
    let node = Node::start().await;
    let receiver = Receiver::ok().await;
    node.create(&receiver.url()).await;
    let kept = |event: &'static str| {
        let store = node.harness.store.clone();
        async move { store.payload("acme", event).expect("read") }
    };
    node.publish_run("evt-1").await;
    let original = eventually(WAIT, "evt-1's body kept", || kept("evt-1")).await;
    let (batch, altered) = node
        .altered_batch("payloads", |body| {
            let mut altered = Payload::decode_batch(body).expect("a batch");
            altered[0].body = br#"{"report_run_url":"https://attacker.test/"}"#.to_vec();
            altered[0].body_bytes = altered[0].body.len();
            Payload::encode_batch(&altered).expect("encoded")
        })
        .await;

    node.attack("payloads", &batch, &altered, async {
        node.publish_run("evt-2").await;
        eventually(WAIT, "evt-2's body kept", || kept("evt-2")).await;
    })
    .await;
    assert_eq!(kept("evt-1").await.expect("still kept"), original);
    node.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_an_unknown_version_stops_the_node_there_and_says_why() {
    let node = Node::start().await;
    let known = node.create("http://127.0.0.1:9/known").await;
    let (_, mut after) = node.create_entry().await;
    let behind = Uuid::now_v7();
    after["id"] = json!(Uuid::now_v7());
    after["change"]["webhook"]["id"] = json!(behind);
    after["change"]["webhook"]["keys"] = json!([]);
    let after = serde_json::to_vec(&after).expect("JSON");
    let session = Uuid::now_v7();
    let origin = Origin {
        node: "newer-node".into(),
        session,
        seq: 0,
    };
    let future = node.key.seal_as(
        VERSION + 1,
        &node.stream("changes"),
        &origin,
        b"{\"op\":\"something_new\"}",
    );
    node.publish("changes", &future).await;
    node.publish("changes", &node.sealed("changes", 1, &after, session))
        .await;
    let payloads_future = node
        .key
        .seal_as(VERSION + 1, &node.stream("payloads"), &origin, b"[]");
    node.publish("payloads", &payloads_future).await;

    let problems = node
        .unready("both streams", |problems| {
            problems.iter().filter(|p| p.contains("version 2")).count() == 2
        })
        .await;
    assert!(
        problems.iter().any(
            |p| p.starts_with("stopped applying the changes stream at offset")
                && p.contains(
                    "envelope version 2, which this build does not know; upgrade this node"
                )
        ),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("stopped applying the payloads stream")),
        "{problems:?}"
    );
    // What came before it is applied; nothing after it is, until an upgrade.
    assert!(node.webhook(&known).is_some());
    tokio::time::sleep(QUIET).await;
    assert!(
        node.harness
            .store
            .get("acme", &behind)
            .expect("read")
            .is_none()
    );
    node.harness.finish().await;
}

/// A newer build's webhook setting (here a made-up `ordering`) in an authentic entry is
/// never dropped: this node would deliver otherwise than the nodes that know it. The node
/// stops applying the changes stream there, and says so, until it is upgraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_setting_this_build_does_not_know_stops_the_node_there() {
    let node = Node::start().await;
    let known = node.create("http://127.0.0.1:9/known").await;
    let (_, mut newer) = node.create_entry().await;
    let unknown = Uuid::now_v7();
    newer["id"] = json!(Uuid::now_v7());
    newer["change"]["webhook"]["id"] = json!(unknown);
    newer["change"]["webhook"]["ordering"] = json!("fifo");
    let newer = serde_json::to_vec(&newer).expect("JSON");
    node.publish(
        "changes",
        &node.sealed("changes", 0, &newer, Uuid::now_v7()),
    )
    .await;

    let problems = node
        .unready("the changes stream", |problems| !problems.is_empty())
        .await;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("stopped applying the changes stream")
                && p.contains("unknown field `ordering`")),
        "{problems:?}"
    );
    assert!(node.webhook(&known).is_some());
    assert!(
        node.harness
            .store
            .get("acme", &unknown)
            .expect("read")
            .is_none(),
        "an entry with a setting this build does not know was applied without it"
    );
    node.harness.finish().await;
}
