//! The replication scenarios: serve's memory with the store replicated, and a change
//! made through one node's API until a third node's API shows it (a node rebuilding from
//! the streams is in `rebuild`); and what they share with it: the admin API client.

use std::net::SocketAddr;

use anyhow::{bail, ensure};
use hookwire_store::{AttemptQuery, Store};
use serde_json::{Value, json};

use super::footprint::opt_mib;
use super::*;
use crate::amqp::EVENT_TYPE;
use crate::serve::API_TOKEN;
use crate::store_scenario::dir_size;

/// How long a change may take to show on another node before the scenario fails.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);

impl Bench {
    /// `memory-steady` again, on a fresh serve with replication on; then the store's size
    /// on disk, the attempt log's share of it, and the streams' size on the broker's disk.
    pub(super) async fn memory_replicated(&mut self) -> Result<ScenarioResult> {
        let settings = ServeSettings {
            replication: true,
            ..self.memory_settings.clone()
        };
        let node = Node::new(
            &self.memrepl_namespace.clone(),
            std::slice::from_ref(&self.cli.amqp_url),
        );
        let sub = subscription(STEADY_ORG, &self.receiver.url(0))?;
        let serve = self
            .start_node(&node, &settings, std::slice::from_ref(&sub))
            .await?;
        let idle = procfs::rss_bytes(self.serves[serve].pid());
        let events = (self.cli.rate * self.cli.memory_secs as f64).round() as usize;
        let step = Step {
            scenario: Scenario::MemoryReplicated,
            name: "memory-replicated".into(),
            org: STEADY_ORG,
            fanout: 1,
            mode: Mode::Ok,
            events,
            rate: Some(self.cli.rate),
            setup: format!(
                "as memory-steady, with replication.enabled: serve's RSS at a steady {} events/s for {} s (a fresh serve, retry_schedule [1h])",
                self.cli.rate, self.cli.memory_secs
            ),
        };
        let mut r = self.deliver(serve, step).await?;
        r.notes.push(format!(
            "RSS when idle before the load: {} MiB",
            opt_mib(idle)
        ));
        let store_path = self.serves[serve].store_path();
        let store_bytes = dir_size(&store_path);
        let names = Names::new(&node.namespace);
        let streams: Vec<String> = [names.changes_stream(), names.payloads_stream()]
            .into_iter()
            .chain(std::iter::once(format!("{}.attempts", node.namespace)))
            .filter_map(|stream| stream_disk_bytes(&stream).map(|b| format!("{stream} {}", mib(b))))
            .collect();
        r.notes.push(format!(
            "store on disk at the end: {} MiB; streams on the broker's disk: {}",
            mib(store_bytes),
            if streams.is_empty() {
                "not readable here".to_owned()
            } else {
                streams.join(", ")
            }
        ));
        // sled allows one process: the log is read once serve has stopped.
        self.serves[serve].halt().await?;
        let key = node.key()?;
        let id = sub.id;
        let (attempts, attempt_bytes, payloads, payload_bytes) =
            tokio::task::spawn_blocking(move || -> Result<(usize, u64, usize, u64)> {
                let store = Store::open(&store_path, 8 << 20, &key)?;
                let (mut count, mut bytes) = (0usize, 0u64);
                let mut cursor = None;
                loop {
                    let page = store.attempts(
                        &id,
                        &AttemptQuery {
                            cursor: cursor.take(),
                            limit: 500,
                            ..AttemptQuery::default()
                        },
                    )?;
                    for attempt in &page.items {
                        count += 1;
                        bytes += serde_json::to_vec(attempt)?.len() as u64;
                    }
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                let (payloads, payload_bytes) = store.payload_stats()?;
                Ok((count, bytes, payloads, payload_bytes))
            })
            .await??;
        r.notes.push(format!(
            "the webhook's attempt log: {attempts} records, {} MiB as JSON ({:.0} B each; \
             store.attempts_per_webhook {} caps it); kept event bodies: {payloads}, {} MiB",
            mib(attempt_bytes),
            attempt_bytes as f64 / attempts.max(1) as f64,
            hookwire_core::Config::defaults().store.attempts_per_webhook,
            mib(payload_bytes),
        ));
        Ok(r)
    }

    /// Three replicated nodes on one namespace; `--changes` changes through node 1's API
    /// (creates of a webhook in a fresh organization, and updates of its description,
    /// alternating), each timed from just before the request until node 3's API shows
    /// it, polled back to back on a connection of its own.
    pub(super) async fn propagation(&mut self) -> Result<ScenarioResult> {
        let n = self.cli.changes.max(2);
        let settings = ServeSettings {
            replication: true,
            ..self.settings.clone()
        };
        let shared = Node::new(
            &self.prop_namespace.clone(),
            std::slice::from_ref(&self.cli.amqp_url),
        );
        let mut nodes = Vec::new();
        for k in 1..=3 {
            let node = shared.named(&format!("node-{k}"));
            nodes.push(self.start_node(&node, &settings, &[]).await?);
        }
        let ready: Vec<String> = nodes
            .iter()
            .map(|&i| format!("{:.2}", self.serves[i].ready_after.as_secs_f64()))
            .collect();
        let (first, third) = (self.serves[nodes[0]].api(), self.serves[nodes[2]].api());
        eprintln!("propagation: {n} changes through node 1 ({first}), watched on node 3 ({third})");
        let writer = Api::new()?;
        let watcher = Api::new()?;
        let target = self.receiver.url(0);
        let (mut seen, mut answered, mut after_answer) = (Vec::new(), Vec::new(), Vec::new());
        let (mut creates, mut updates) = (Vec::new(), Vec::new());
        let mut before_answer = 0;
        let mut current: Option<(String, String)> = None;
        let started = Instant::now();
        for i in 0..n {
            let (org, id, shown_at) = match (&current, i % 2) {
                (Some((org, id)), 1) => {
                    let description = format!("rev-{i}");
                    let path = format!("/v1/orgs/{org}/webhooks/{id}");
                    let expect = description.clone();
                    let watch = watcher.watch(third, path.clone(), move |w| {
                        w["description"].as_str() == Some(expect.as_str())
                    });
                    let t0 = Instant::now();
                    let (status, body) = writer
                        .call(
                            first,
                            reqwest::Method::PATCH,
                            &format!("{path}?verify=false"),
                            Some(json!({ "description": description })),
                        )
                        .await?;
                    ensure!(status == 200, "update through node 1: {status} {body}");
                    (org.clone(), id.clone(), (t0, t0.elapsed(), watch))
                }
                _ => {
                    let org = format!("bench-prop-{i:05}");
                    let watch = watcher.watch(third, format!("/v1/orgs/{org}/webhooks"), |l| {
                        l["webhooks"].as_array().is_some_and(|a| !a.is_empty())
                    });
                    let t0 = Instant::now();
                    let (status, body) = writer
                        .call(
                            first,
                            reqwest::Method::POST,
                            &format!("/v1/orgs/{org}/webhooks?verify=false"),
                            Some(json!({
                                "url": target,
                                "description": "propagation",
                                "events": [EVENT_TYPE],
                            })),
                        )
                        .await?;
                    ensure!(status == 201, "create through node 1: {status} {body}");
                    let id = body["id"]
                        .as_str()
                        .context("a created webhook has an id")?
                        .to_owned();
                    (org, id, (t0, t0.elapsed(), watch))
                }
            };
            let (t0, answer, watch) = shown_at;
            let shown = watch.await??.duration_since(t0);
            if shown < answer {
                before_answer += 1;
            }
            seen.push(shown);
            answered.push(answer);
            after_answer.push(shown.saturating_sub(answer));
            if i % 2 == 0 {
                creates.push(shown);
            } else {
                updates.push(shown);
            }
            current = Some((org, id));
        }
        let secs = started.elapsed().as_secs_f64();
        for &i in &nodes {
            self.serves[i].check_alive()?;
        }
        // Idle nodes still read their streams: stopped, so that the scenarios after this
        // one run beside nothing of it.
        for &i in &nodes {
            self.serves[i].halt().await?;
        }
        let ms = |d: &[Duration]| {
            let p = percentiles(d);
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                p.p50_ms, p.p99_ms, p.max_ms
            )
        };
        Ok(ScenarioResult {
            setup: format!(
                "three serve nodes (replication.enabled, own data directories and API ports) on one namespace; {n} changes through node 1's API, one at a time: creates of a webhook in a fresh organization (?verify=false) and updates of its description, alternating; each from just before the request until node 3's API shows it (GET polled back to back)"
            ),
            events: n,
            expected: n as u64,
            delivered: seen.len() as u64,
            secs,
            per_sec: seen.len() as f64 / secs.max(1e-9),
            latency: Some(percentiles(&seen)),
            complete: seen.len() == n,
            notes: vec![
                format!("visible on node 3: {}", ms(&seen)),
                format!("creates: {}; updates: {}", ms(&creates), ms(&updates)),
                format!("node 1's answer to the write: {}", ms(&answered)),
                format!(
                    "node 3 after node 1's answer: {}; {before_answer} of {n} were visible on node 3 before node 1 answered",
                    ms(&after_answer)
                ),
                format!("each node's start until ready, s: {}", ready.join(", ")),
            ],
            ..ScenarioResult::named("propagation", "changes/s")
        })
    }
}

/// Percentiles of durations.
fn percentiles(samples: &[Duration]) -> crate::tally::Percentiles {
    crate::tally::Percentiles::of(
        samples
            .iter()
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .collect(),
    )
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// Bytes of stream `name` on the machine's RabbitMQ's disk (its directory under
/// `/var/lib/rabbitmq/mnesia/<node>/stream/`, named `__<name>_<time>` for vhost `/`, with
/// `.` as `_`); `None` when it cannot be read.
fn stream_disk_bytes(name: &str) -> Option<u64> {
    let prefix = format!("__{}_", name.replace('.', "_"));
    let mut total = None;
    for node in std::fs::read_dir("/var/lib/rabbitmq/mnesia")
        .ok()?
        .flatten()
    {
        let Ok(streams) = std::fs::read_dir(node.path().join("stream")) else {
            continue;
        };
        for stream in streams.flatten() {
            if stream.file_name().to_string_lossy().starts_with(&prefix) {
                *total.get_or_insert(0) += dir_size(&stream.path());
            }
        }
    }
    total
}

/// The admin API of the bench's serves, over a client of its own (one connection).
#[derive(Clone)]
pub(super) struct Api {
    http: reqwest::Client,
}

impl Api {
    pub(super) fn new() -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(1)
                .build()?,
        })
    }

    pub(super) async fn call(
        &self,
        api: SocketAddr,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("http://{api}{path}"))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body)?);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// GETs `path` of `api` back to back until `shown` holds for a 200 answer; when.
    pub(super) fn watch(
        &self,
        api: SocketAddr,
        path: String,
        shown: impl Fn(&Value) -> bool + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<Instant>> {
        let this = self.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + PROPAGATION_TIMEOUT;
            loop {
                let (status, body) = this.call(api, reqwest::Method::GET, &path, None).await?;
                if status == 200 && shown(&body) {
                    return Ok(Instant::now());
                }
                if Instant::now() > deadline {
                    bail!(
                        "GET {path} on {api} did not show the change within {PROPAGATION_TIMEOUT:?}: {status} {body}"
                    );
                }
            }
        })
    }
}
