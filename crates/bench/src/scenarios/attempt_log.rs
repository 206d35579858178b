//! The attempt-log scenario: what `serve` costs with a long attempt log and a full payload
//! archive kept on disk. A store is filled in-process (many webhooks at their cap, one
//! webhook with a long log, bodies up to the archive's byte budget), then `serve` starts
//! on it as after a restart: its RSS idle (past the first prune), then the attempt
//! listings' latency through the API, and its RSS after them.

use std::time::SystemTime;

use anyhow::ensure;
use hookwire_store::{AttemptRecord, Change, Payload, Store};

use super::replication::{Api, mib};
use super::*;
use crate::serve::Serve;
use crate::store_scenario::dir_size;
use crate::tally::Percentiles;

/// The organizations of the webhooks at their cap: ten webhooks each.
const LOG_ORG: &str = "bench-log";
/// The organization of the webhook with the long log.
const BIG_ORG: &str = "bench-log-big";
/// One attempt in this many of the long log failed (`outcome=retry`): a sparse filter.
const RETRY_EVERY: usize = 32;
/// The long log's attempts are this far apart (ms).
const BIG_SPACING_MS: u64 = 100;
/// The size of each kept body.
const BODY_BYTES: usize = 1024;
/// Attempt records per write, as the attempt log's writer batches them.
const BATCH: usize = 1000;
/// The page size of the timed requests, and of the walks.
const PAGE: usize = 100;
const WALK_PAGE: usize = 500;

/// What the fill put in the store.
struct Filled {
    attempts: usize,
    body_bytes: u64,
    secs: f64,
    disk_bytes: u64,
}

impl Bench {
    pub(super) async fn attempt_log(&mut self) -> Result<ScenarioResult> {
        let (webhooks, per_webhook) = (self.cli.log_webhooks, self.cli.log_per_webhook);
        let (big, bodies) = (self.cli.log_big.max(RETRY_EVERY), self.cli.log_payloads);
        let url = self.receiver.url(0);
        let mut subs = (0..webhooks)
            .map(|k| subscription(&format!("{LOG_ORG}-{:04}", k / 10), &url))
            .collect::<Result<Vec<_>>>()?;
        let big_sub = subscription(BIG_ORG, &url)?;
        subs.push(big_sub.clone());
        let node = Node::new(
            &self.log_namespace,
            std::slice::from_ref(&self.cli.amqp_url),
        );
        let binary = self.binary.clone().context("no hookwire binary")?;
        let env: Vec<(String, String)> = self
            .cli
            .log_env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ids: Vec<uuid::Uuid> = subs.iter().map(|s| s.id).collect();
        let mut filled = None;
        eprintln!(
            "attempt-log: filling a store with {webhooks} webhooks × {per_webhook} attempts, \
             one webhook × {big}, {bodies} bodies of {BODY_BYTES} B"
        );
        let prepare = |config: &mut hookwire_core::Config| {
            config.store.attempts_per_webhook = per_webhook.max(big);
            let budget =
                ((bodies * BODY_BYTES) as u64).max(hookwire_core::config::MIN_PAYLOAD_BUDGET_BYTES);
            config.store.payload_max_bytes = budget;
            config.store.payload_max_bytes_per_org = budget;
            let done = tokio::task::block_in_place(|| {
                fill(
                    config,
                    &ids[..webhooks],
                    per_webhook,
                    ids[webhooks],
                    big,
                    bodies,
                )
            })?;
            filled = Some(done);
            Ok(())
        };
        let serve = Serve::start_with(
            &binary,
            &node,
            &self.settings,
            &subs,
            &self.broker,
            prepare,
            &env,
        )
        .await?;
        let filled = filled.context("the store was not filled")?;
        self.serves.push(serve);
        let i = self.serves.len() - 1;
        let pid = self.serves[i].pid();
        let ready_after = self.serves[i].ready_after.as_secs_f64();
        let rss_ready = procfs::rss_bytes(pid);
        eprintln!(
            "attempt-log: serve ready after {ready_after:.2} s; idle for {} s",
            self.cli.log_idle_secs
        );
        let idle_until = Instant::now() + Duration::from_secs(self.cli.log_idle_secs);
        while Instant::now() < idle_until {
            self.serves[i].check_alive()?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let rss_idle = procfs::rss_bytes(pid);

        let api = self.serves[i].api();
        let http = Api::new()?;
        let base = format!("/v1/orgs/{BIG_ORG}/webhooks/{}/attempts", big_sub.id);
        let rss = RssSampler::start(pid);
        let started = Instant::now();
        // The last hundredth of the long log.
        let since = SystemTime::UNIX_EPOCH
            + Duration::from_millis(hookwire_core::now_ms() - (big as u64 / 100) * BIG_SPACING_MS);
        let since = humantime::format_rfc3339_millis(since).to_string();
        let retries = big / RETRY_EVERY;
        let kinds = [
            (
                "a first page",
                format!("{base}?limit={PAGE}"),
                Some(PAGE.min(big)),
            ),
            (
                "outcome=retry (one attempt in 32)",
                format!("{base}?limit={PAGE}&outcome=retry"),
                Some(PAGE.min(retries)),
            ),
            (
                "outcome=delivered",
                format!("{base}?limit={PAGE}&outcome=delivered"),
                Some(PAGE.min(big - retries)),
            ),
            (
                "outcome=gone (none kept)",
                format!("{base}?limit={PAGE}&outcome=gone"),
                Some(0),
            ),
            (
                "since= the last hundredth",
                format!("{base}?limit={PAGE}&since={since}"),
                None,
            ),
        ];
        let mut complete = true;
        let mut notes = Vec::new();
        let mut requests = 0;
        let mut timed = Vec::new();
        for (what, path, expected) in &kinds {
            let mut samples = Vec::with_capacity(self.cli.log_requests);
            for _ in 0..self.cli.log_requests {
                let t = Instant::now();
                let (status, page) = http.call(api, reqwest::Method::GET, path, None).await?;
                samples.push(t.elapsed());
                requests += 1;
                ensure!(status == 200, "{what}: {status} {page}");
                let n = page["attempts"].as_array().map_or(0, Vec::len);
                // since='s window moves with the clock: its page is not counted.
                if expected.is_some_and(|e| n != e) {
                    complete = false;
                    notes.push(format!("{what}: {n} attempts, {expected:?} expected"));
                }
            }
            let p = percentiles_of(&samples);
            notes.push(format!(
                "{what}: p50 {:.2} ms, p99 {:.2} ms over {} requests (limit {PAGE})",
                p.p50_ms, p.p99_ms, p.count
            ));
            timed.push(p);
        }
        for (what, query, expected) in [
            ("every attempt", String::new(), big),
            ("outcome=retry", "&outcome=retry".to_owned(), retries),
        ] {
            let t = Instant::now();
            let (mut seen, mut pages, mut cursor) = (0, 0, None::<String>);
            loop {
                let mut path = format!("{base}?limit={WALK_PAGE}{query}");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let (status, page) = http.call(api, reqwest::Method::GET, &path, None).await?;
                ensure!(status == 200, "walking {what}: {status} {page}");
                seen += page["attempts"].as_array().map_or(0, Vec::len);
                pages += 1;
                requests += 1;
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            complete &= seen == expected;
            notes.push(format!(
                "cursor walk of {what}: {seen} of {expected} attempts in {pages} pages of up to \
                 {WALK_PAGE}, {:.1} ms per page",
                t.elapsed().as_secs_f64() * 1e3 / pages as f64
            ));
        }
        let secs = started.elapsed().as_secs_f64();
        let (rss_max, rss_end) = rss.stop();
        notes.insert(
            0,
            format!(
                "serve RSS: {} MiB when ready ({ready_after:.2} s after spawn), {} MiB idle {} s \
                 later, {} MiB after the listings (max {} MiB during them)",
                footprint::opt_mib(rss_ready),
                footprint::opt_mib(rss_idle),
                self.cli.log_idle_secs,
                rss_end.map_or_else(|| "-".into(), |m| format!("{m:.1}")),
                rss_max.map_or_else(|| "-".into(), |m| format!("{m:.1}")),
            ),
        );
        notes.insert(
            1,
            format!(
                "the store: {} attempt records and {} MiB of bodies written in {:.1} s, {} MiB \
                 on disk before serve started",
                filled.attempts,
                mib(filled.body_bytes),
                filled.secs,
                mib(filled.disk_bytes)
            ),
        );
        self.serves[i].halt().await?;
        Ok(ScenarioResult {
            setup: format!(
                "{webhooks} webhooks × {per_webhook} attempts (batches of {BATCH} over 100 \
                 webhooks), one webhook × {big} ({BIG_SPACING_MS} ms apart, one in \
                 {RETRY_EVERY} `retry`), {bodies} kept bodies of {BODY_BYTES} B \
                 (store.payload_max_bytes at what they take), written in-process; then serve \
                 started on the store (store.attempts_per_webhook {}, sled cache {} MiB{})",
                per_webhook.max(big),
                self.settings.cache_capacity_bytes >> 20,
                if env.is_empty() {
                    String::new()
                } else {
                    format!(", env {}", self.cli.log_env.join(" "))
                }
            ),
            events: requests,
            expected: requests as u64,
            delivered: requests as u64,
            secs,
            per_sec: requests as f64 / secs.max(1e-9),
            latency: timed.first().copied(),
            serve_rss_max_mib: rss_max,
            serve_rss_end_mib: rss_end,
            complete,
            notes,
            ..ScenarioResult::named("attempt-log", "requests/s")
        })
    }
}

fn percentiles_of(samples: &[Duration]) -> Percentiles {
    Percentiles::of(samples.iter().map(|d| d.as_nanos() as u64).collect())
}

/// Fills the store of `config` (blocking): `per_webhook` attempts of each of `many`
/// (batches of [`BATCH`] spread over 100 webhooks, a second apart), `big` attempts of
/// `big_id`, and `bodies` kept bodies.
fn fill(
    config: &hookwire_core::Config,
    many: &[uuid::Uuid],
    per_webhook: usize,
    big_id: uuid::Uuid,
    big: usize,
    bodies: usize,
) -> Result<Filled> {
    let started = Instant::now();
    let store = Store::open(
        &config.store.path,
        config.store.cache_capacity_bytes,
        &config.secrets_key()?,
    )?;
    let now = hookwire_core::now_ms();
    let attempt = |id: uuid::Uuid, n: usize, at_ms: u64, retry: bool| AttemptRecord {
        subscription_id: id,
        event_id: format!("evt_bench_log_{n:010}"),
        message_id: format!("msg_bench_log_{n:010}"),
        attempt: 1,
        at_ms,
        outcome: if retry {
            "retry"
        } else {
            hookwire_store::DELIVERED
        }
        .into(),
        status: Some(if retry { 500 } else { 200 }),
        latency_ms: 3,
        error_kind: None,
        error: None,
        response_excerpt: if retry {
            "upstream busy".into()
        } else {
            "ok".into()
        },
        transformed: None,
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut attempts = 0;
    let mut flush = |batch: &mut Vec<AttemptRecord>| -> Result<()> {
        attempts += batch.len();
        store.apply(Change::RecordAttempts(std::mem::take(batch)))?;
        Ok(())
    };
    for group in many.chunks(100) {
        for block in (0..per_webhook).step_by(10) {
            for (k, id) in group.iter().enumerate() {
                for j in block..(block + 10).min(per_webhook) {
                    let at = now - (per_webhook - j) as u64 * 1000;
                    batch.push(attempt(*id, k * per_webhook + j, at, false));
                    if batch.len() == BATCH {
                        flush(&mut batch)?;
                    }
                }
            }
        }
    }
    for n in 0..big {
        let at = now - (big - n) as u64 * BIG_SPACING_MS;
        batch.push(attempt(big_id, n, at, n % RETRY_EVERY == RETRY_EVERY - 1));
        if batch.len() == BATCH {
            flush(&mut batch)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch)?;
    }
    let body = vec![b'x'; BODY_BYTES];
    let mut payloads = Vec::with_capacity(512);
    for n in 0..bodies {
        payloads.push(Payload {
            org: format!("{LOG_ORG}-{:04}", n % many.len().div_ceil(10).max(1)),
            event_id: format!("evt_bench_body_{n:010}"),
            event_type: crate::amqp::EVENT_TYPE.into(),
            received_at_ms: now - (bodies - n) as u64,
            published_at_ms: None,
            body: body.clone(),
            body_bytes: BODY_BYTES,
        });
        if payloads.len() == 512 || n + 1 == bodies {
            store.apply(Change::RecordPayloads(std::mem::take(&mut payloads)))?;
        }
    }
    store.flush()?;
    drop(store);
    Ok(Filled {
        attempts,
        body_bytes: (bodies * BODY_BYTES) as u64,
        secs: started.elapsed().as_secs_f64(),
        disk_bytes: dir_size(&config.store.path),
    })
}
