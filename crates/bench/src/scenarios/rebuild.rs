//! The rebuild scenario: a node with an empty data directory rebuilding from the
//! streams (the changes stream and the attempts stream).

use anyhow::{bail, ensure};
use hookwire_store::{AttemptRecord, Store};

use super::replication::{Api, mib};
use super::*;
use crate::store_scenario::dir_size;

/// Subscriptions per organization in the rebuild scenario's store.
const REBUILD_PER_ORG: usize = 10;
/// Attempt records per message of the attempts stream in the rebuild scenario.
const ATTEMPT_BATCH: usize = 1000;
/// Webhooks whose attempts one such batch holds.
const ATTEMPT_SPREAD: usize = 100;

impl Bench {
    /// `--rebuild-webhooks` webhooks put in the changes stream as an export's entries (the
    /// way `hookwire store import` publishes them, but with a window of confirms), and
    /// `--rebuild-attempts` attempt records in the attempts stream (encoded as its writer
    /// encodes them, in batches of [`ATTEMPT_BATCH`]); nodes with an empty data directory
    /// started on the namespace, timed from spawn: one on the empty streams (what is only
    /// starting), one on the webhooks alone (until `/readyz` answers 200: caught up with
    /// the changes stream, and consuming), and one on both (until then, and until its
    /// `/readyz` reports the attempts stream's last batch applied).
    pub(super) async fn rebuild(&mut self) -> Result<ScenarioResult> {
        let webhooks = self.cli.rebuild_webhooks.max(1);
        let attempts = self.cli.rebuild_attempts;
        let settings = ServeSettings {
            replication: true,
            ..self.settings.clone()
        };
        let shared = Node::new(
            &self.rebuild_namespace.clone(),
            std::slice::from_ref(&self.cli.amqp_url),
        );
        let empty = self
            .start_node(&shared.named("node-empty"), &settings, &[])
            .await?;
        let empty_ready = self.serves[empty].ready_after;
        self.serves[empty].halt().await?;

        eprintln!("rebuild: exporting {webhooks} webhooks from a seeded store");
        let key = shared.key()?;
        let target = self.receiver.url(0);
        let (entries, ids) =
            tokio::task::spawn_blocking(move || export_entries(webhooks, &key, &target)).await??;
        let names = Names::new(&shared.namespace);
        let entries = crate::amqp::sealed(&key, &names.changes_stream(), &entries);
        let entry_bytes: usize = entries.iter().map(Vec::len).sum();
        let import_secs = crate::amqp::publish_raw(
            &self.cli.amqp_url,
            &format!("{}-import", shared.namespace),
            &names.changes_stream(),
            &entries,
            self.cli.confirm_window,
        )
        .await?;
        eprintln!(
            "rebuild: {} entries ({} MiB) published to {} in {import_secs:.2} s; starting a node with an empty data directory",
            entries.len(),
            mib(entry_bytes as u64),
            names.changes_stream()
        );
        let only_webhooks = self
            .start_node(&shared.named("node-webhooks"), &settings, &[])
            .await?;
        let webhooks_ready = self.serves[only_webhooks].ready_after;
        let (mut complete, held) = self.check_rebuilt(only_webhooks, webhooks).await?;
        self.serves[only_webhooks].halt().await?;
        let webhooks_rebuild = webhooks_ready.saturating_sub(empty_ready);
        // Below this the two start-ups cannot be told apart (a smoke run's few webhooks).
        let rebuild_cost = if webhooks_rebuild < Duration::from_millis(10) {
            "no measurable time beyond starting".to_owned()
        } else {
            format!(
                "about {:.2} s ({:.0} webhooks/s)",
                webhooks_rebuild.as_secs_f64(),
                webhooks as f64 / webhooks_rebuild.as_secs_f64()
            )
        };
        let mut notes = vec![
            format!(
                "the webhooks alone: ready {:.2} s after spawn; a node on the same namespace with empty streams: {:.2} s; so rebuilding {webhooks} webhooks took {rebuild_cost}",
                webhooks_ready.as_secs_f64(),
                empty_ready.as_secs_f64(),
            ),
            format!(
                "the import: {} entries, {} MiB ({:.0} B each), published in {import_secs:.2} s",
                entries.len(),
                mib(entry_bytes as u64),
                entry_bytes as f64 / entries.len().max(1) as f64
            ),
            held,
        ];

        let batches = if attempts > 0 {
            eprintln!("rebuild: encoding {attempts} attempt records");
            let batches =
                tokio::task::spawn_blocking(move || attempt_batches(&ids, attempts)).await??;
            let defaults = hookwire_core::Config::defaults();
            Topology::new(&shared.namespace, [])
                .declare_attempts(
                    &self.broker,
                    hookwire_amqp::StreamBounds {
                        max_age: defaults.store.attempt_retention,
                        max_bytes: defaults.replication.attempts_max_bytes,
                    },
                )
                .await?;
            let batches = crate::amqp::sealed(&key, &names.attempts_stream(), &batches);
            let bytes: usize = batches.iter().map(Vec::len).sum();
            let secs = crate::amqp::publish_raw(
                &self.cli.amqp_url,
                &format!("{}-attempts", shared.namespace),
                &names.attempts_stream(),
                &batches,
                self.cli.confirm_window.min(32),
            )
            .await?;
            notes.push(format!(
                "the attempts: {attempts} records in {} batches of up to {ATTEMPT_BATCH} ({ATTEMPT_SPREAD} webhooks × {} attempts each), {} MiB ({:.0} B per record), published in {secs:.2} s",
                batches.len(),
                ATTEMPT_BATCH / ATTEMPT_SPREAD,
                mib(bytes as u64),
                bytes as f64 / attempts as f64
            ));
            eprintln!(
                "rebuild: {} MiB of attempt batches published in {secs:.2} s; starting a node with an empty data directory",
                mib(bytes as u64)
            );
            batches.len()
        } else {
            0
        };

        let mut took = webhooks_ready;
        if batches > 0 {
            let rebuilt = self
                .start_node(&shared.named("node-rebuilt"), &settings, &[])
                .await?;
            let changes_ready = self.serves[rebuilt].ready_after;
            let api = self.serves[rebuilt].api();
            let http = Api::new()?;
            let last = batches as u64 - 1;
            let rss = RssSampler::start(self.serves[rebuilt].pid());
            let deadline = Instant::now() + Duration::from_secs(3600);
            let mut last_report = Instant::now();
            took = loop {
                let (_, readyz) = http
                    .call(api, reqwest::Method::GET, "/readyz", None)
                    .await?;
                let applied = readyz["replication"]["attempts_applied_offset"].as_u64();
                if applied.is_some_and(|a| a >= last) {
                    break self.serves[rebuilt].spawned_at.elapsed();
                }
                self.serves[rebuilt].check_alive()?;
                if Instant::now() > deadline {
                    bail!(
                        "the rebuilt node had applied attempts batch {applied:?} of {last} after an hour"
                    );
                }
                if last_report.elapsed() > Duration::from_secs(10) {
                    eprintln!("  attempts batch {applied:?} of {last} applied");
                    last_report = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let (rss_max, rss_end) = rss.stop();
            let beyond = took.saturating_sub(empty_ready);
            notes.push(format!(
                "webhooks and attempts: ready (changes stream caught up) {:.2} s after spawn, every attempts batch applied {:.2} s after spawn: about {:.2} s beyond starting ({:.0} attempt records/s); RSS max {} MiB, {} MiB at the end",
                changes_ready.as_secs_f64(),
                took.as_secs_f64(),
                beyond.as_secs_f64(),
                attempts as f64 / beyond.as_secs_f64().max(1e-9),
                rss_max.map_or_else(|| "-".into(), |m| format!("{m:.1}")),
                rss_end.map_or_else(|| "-".into(), |m| format!("{m:.1}")),
            ));
            // The first and the last organization's first webhook: each got its share.
            let mut listed = Vec::new();
            for org in [0, webhooks.div_ceil(REBUILD_PER_ORG) - 1] {
                let org = rebuild_org(org);
                let (_, list) = http
                    .call(
                        api,
                        reqwest::Method::GET,
                        &format!("/v1/orgs/{org}/webhooks?limit=1"),
                        None,
                    )
                    .await?;
                let id = list["webhooks"][0]["id"].as_str().unwrap_or_default();
                let (status, page) = http
                    .call(
                        api,
                        reqwest::Method::GET,
                        &format!("/v1/orgs/{org}/webhooks/{id}/attempts?limit=500"),
                        None,
                    )
                    .await?;
                ensure!(
                    status == 200,
                    "attempts of a rebuilt webhook: {status} {page}"
                );
                listed.push(page["attempts"].as_array().map_or(0, Vec::len));
            }
            complete &= listed.iter().all(|&n| n > 0);
            notes.push(format!(
                "attempts listed through the API for two rebuilt webhooks: {listed:?} (each was given about {}; one page of up to 500)",
                attempts.div_ceil(webhooks)
            ));
            let (held_ok, held) = self.check_rebuilt(rebuilt, webhooks).await?;
            complete &= held_ok;
            notes.push(held);
            self.serves[rebuilt].halt().await?;
        }
        Ok(ScenarioResult {
            setup: format!(
                "{webhooks} webhooks ({REBUILD_PER_ORG} per organization) as `store export` entries in {}, and {attempts} attempt records in {}; nodes with an empty data directory and replication.enabled, timed from spawn",
                names.changes_stream(),
                names.attempts_stream(),
            ),
            events: webhooks + attempts,
            expected: (webhooks + attempts) as u64,
            delivered: (webhooks + attempts) as u64,
            secs: took.as_secs_f64(),
            per_sec: (webhooks + attempts) as f64
                / took.saturating_sub(empty_ready).as_secs_f64().max(1e-9),
            complete,
            notes,
            ..ScenarioResult::named("rebuild", "records/s")
        })
    }

    /// Whether the rebuilt node `serve` holds the rebuild's `webhooks` (its applied offset,
    /// and three organizations listed through its API), and what was found.
    async fn check_rebuilt(&self, serve: usize, webhooks: usize) -> Result<(bool, String)> {
        let api = self.serves[serve].api();
        let http = Api::new()?;
        let (_, readyz) = http
            .call(api, reqwest::Method::GET, "/readyz", None)
            .await?;
        let applied = readyz["replication"]["applied_offset"].as_u64();
        let orgs = webhooks.div_ceil(REBUILD_PER_ORG);
        let (mut held, mut expected) = (0, 0);
        for org in [0, orgs / 2, orgs - 1] {
            let (status, list) = http
                .call(
                    api,
                    reqwest::Method::GET,
                    &format!("/v1/orgs/{}/webhooks?limit=500", rebuild_org(org)),
                    None,
                )
                .await?;
            ensure!(
                status == 200,
                "listing a rebuilt organization: {status} {list}"
            );
            held += list["webhooks"].as_array().map_or(0, Vec::len);
            expected += REBUILD_PER_ORG.min(webhooks - org * REBUILD_PER_ORG);
        }
        let store_bytes = dir_size(&self.serves[serve].store_path());
        Ok((
            applied.is_some_and(|a| a >= webhooks as u64) && held == expected,
            format!(
                "{}: applied offset {}, {held} of {expected} webhooks found in three organizations checked through its API, store {} MiB on disk",
                self.serves[serve].node_id(),
                applied.map_or_else(|| "-".into(), |a| a.to_string()),
                mib(store_bytes),
            ),
        ))
    }
}

fn rebuild_org(k: usize) -> String {
    format!("bench-rebuild-{k:06}")
}

/// `webhooks` subscriptions in a fresh store sealed under `key`, exported as the entries
/// of one import; and their ids. Blocking.
fn export_entries(
    webhooks: usize,
    key: &[u8; 32],
    url: &str,
) -> Result<(Vec<Vec<u8>>, Vec<uuid::Uuid>)> {
    let dir = tempfile::Builder::new()
        .prefix("hwbench-export-")
        .tempdir()?;
    let store = Store::open(dir.path(), 64 << 20, key)?;
    let mut ids = Vec::with_capacity(webhooks);
    for i in 0..webhooks {
        let sub = subscription(&rebuild_org(i / REBUILD_PER_ORG), url)?;
        ids.push(sub.id);
        store.apply(hookwire_store::Change::Upsert(sub))?;
    }
    let entries = store
        .export(uuid::Uuid::now_v7(), "hookwire-bench")?
        .iter()
        .map(|e| Ok(e.to_bytes()?))
        .collect::<Result<_>>()?;
    Ok((entries, ids))
}

/// `records` delivered attempts of the webhooks `ids`, as attempts-stream batches of
/// [`ATTEMPT_BATCH`]: each batch holds [`ATTEMPT_SPREAD`] webhooks' attempts, the next
/// batch the next webhooks', so every webhook gets its share and a batch's records fall
/// in a few chunks per webhook, as a busy node's would. Times are the last minutes.
/// Blocking.
fn attempt_batches(ids: &[uuid::Uuid], records: usize) -> Result<Vec<Vec<u8>>> {
    let now = hookwire_core::now_ms();
    let mut batches = Vec::with_capacity(records.div_ceil(ATTEMPT_BATCH));
    let mut batch = Vec::with_capacity(ATTEMPT_BATCH);
    for i in 0..records {
        let (b, k) = (i / ATTEMPT_BATCH, i % ATTEMPT_BATCH);
        let webhook = ids[(b * ATTEMPT_SPREAD + k % ATTEMPT_SPREAD) % ids.len()];
        batch.push(AttemptRecord {
            subscription_id: webhook,
            event_id: format!("bench-rebuild-{i}"),
            message_id: format!("msg_bench_{i:010}"),
            attempt: 1,
            at_ms: now - (records - i) as u64 / 10,
            outcome: "delivered".into(),
            status: Some(200),
            latency_ms: 3,
            error_kind: None,
            error: None,
            response_excerpt: String::new(),
            transformed: None,
        });
        if batch.len() == ATTEMPT_BATCH {
            batches.push(AttemptRecord::encode_batch(&batch)?);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        batches.push(AttemptRecord::encode_batch(&batch)?);
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_batches_decode_and_give_every_webhook_its_share() {
        let ids: Vec<uuid::Uuid> = (0..300).map(|_| uuid::Uuid::now_v7()).collect();
        let batches = attempt_batches(&ids, 3_500).expect("encoded");
        assert_eq!(batches.len(), 4);
        let mut per_webhook = std::collections::HashMap::<uuid::Uuid, usize>::new();
        for (b, raw) in batches.iter().enumerate() {
            let records = AttemptRecord::decode_batch(raw).expect("decoded");
            assert_eq!(records.len(), if b < 3 { ATTEMPT_BATCH } else { 500 });
            let webhooks: std::collections::HashSet<_> =
                records.iter().map(|r| r.subscription_id).collect();
            assert_eq!(webhooks.len(), ATTEMPT_SPREAD);
            for r in records {
                *per_webhook.entry(r.subscription_id).or_default() += 1;
            }
        }
        assert_eq!(per_webhook.len(), ids.len());
        assert!(per_webhook.values().all(|&n| (5..=20).contains(&n)));
    }
}
