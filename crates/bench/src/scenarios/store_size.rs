//! The store-size scenario: what a store of N webhooks costs. For each size, webhooks
//! are created in-process through the [`Writer`] (the group commit every API write takes,
//! `--store-size-window` commits in flight), then the lookups of the delivery path are
//! timed, the store is closed and its directory measured, `hookwire store export` writes
//! what it holds, and `serve` starts on it: its readiness (spawn to `/readyz` 200) and
//! its RSS when ready and idle. `--store-size-api` webhooks are also created through the
//! API of a running `serve` (`?verify=false`), which is then stopped and measured alike.

use std::path::Path;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hookwire_core::Config;
use hookwire_store::{Change, Store, Writer};
use serde_json::json;

use super::replication::{Api, mib};
use super::*;
use crate::report;
use crate::serve::Serve;
use crate::store_scenario::{self, Lookups, dir_size, time_lookups, webhook};

/// What one size measured before `serve` started.
struct Filled {
    create_secs: f64,
    disk_bytes: u64,
    export_bytes: u64,
    lookups: Option<Lookups>,
}

impl Bench {
    pub(super) async fn store_size(&mut self) -> Result<Vec<ScenarioResult>> {
        let namespace = format!("{}-size", self.namespace);
        // One serve at a time in it; deleted at cleanup, whatever happens.
        self.extra_topologies
            .push(Self::delivery_topology(&namespace));
        let mut results = Vec::new();
        for n in self.cli.store_sizes.clone() {
            results.push(self.store_size_writer(n).await?);
        }
        if self.cli.store_size_api > 0 {
            results.push(self.store_size_api(self.cli.store_size_api).await?);
        }
        Ok(results)
    }

    /// One size through the Writer in-process, then `serve` started on the store.
    async fn store_size_writer(&mut self, n: usize) -> Result<ScenarioResult> {
        let load_before = report::loadavg();
        let (window, lookups) = (self.cli.store_size_window.max(1), self.cli.lookups);
        let binary = self.binary.clone().context("no hookwire binary")?;
        let node = self.store_size_node();
        eprintln!("store-size: {n} webhooks through the writer, {window} in flight");
        let mut filled = None;
        let prepare = |config: &mut Config| {
            let done = tokio::task::block_in_place(|| {
                let handle = tokio::runtime::Handle::current();
                let create_secs = handle.block_on(create_through_writer(config, n, window))?;
                let store = open(config)?;
                let timed = time_lookups(&store, n, lookups)?;
                drop(store);
                let (disk_bytes, export_bytes) = measure_closed(config, &binary)?;
                anyhow::Ok(Filled {
                    create_secs,
                    disk_bytes,
                    export_bytes,
                    lookups: Some(timed),
                })
            })?;
            filled = Some(done);
            Ok(())
        };
        let serve = Serve::start_with(
            &binary,
            &node,
            &self.settings,
            &[],
            &self.broker,
            prepare,
            &[],
        )
        .await?;
        let filled = filled.context("the store was not filled")?;
        let mut r = self.serve_on_store(serve, n, filled, &load_before).await?;
        r.setup = format!(
            "{n} webhooks (10 per organization, one event type each) created in-process \
             through the Writer, as the API creates them (Change::Create, a flush and fsync \
             per group commit), {window} in flight; then the lookups, the store closed and \
             measured, `hookwire store export`, and serve started on it (sled cache {} MiB)",
            self.settings.cache_capacity_bytes >> 20
        );
        Ok(r)
    }

    /// `n` webhooks created through a running serve's API, then serve stopped, measured
    /// and started again on its store.
    async fn store_size_api(&mut self, n: usize) -> Result<ScenarioResult> {
        let load_before = report::loadavg();
        let window = self.cli.store_size_window.max(1);
        let binary = self.binary.clone().context("no hookwire binary")?;
        let node = self.store_size_node();
        eprintln!("store-size-api: {n} webhooks through the API, {window} in flight");
        let mut serve = Serve::start(&binary, &node, &self.settings, &[], &self.broker).await?;
        let api = serve.api();
        let http = Api::new()?;
        let url = self.receiver.url(0);
        let started = Instant::now();
        let mut inflight = FuturesUnordered::new();
        for i in 0..n {
            let sub = webhook(i)?;
            let body = json!({ "url": url, "events": sub.events, "description": sub.description });
            let path = format!("/v1/orgs/{}/webhooks?verify=false", sub.org);
            let http = &http;
            inflight.push(async move {
                let (status, page) = http
                    .call(api, reqwest::Method::POST, &path, Some(body))
                    .await?;
                anyhow::ensure!(status == 201, "creating webhook {i}: {status} {page}");
                anyhow::Ok(())
            });
            if inflight.len() >= window {
                inflight.next().await.context("a create in flight")??;
            }
        }
        while let Some(done) = inflight.next().await {
            done?;
        }
        drop(inflight);
        let create_secs = started.elapsed().as_secs_f64();
        serve.halt().await?;
        let config = serve.config().clone();
        let (disk_bytes, export_bytes) =
            tokio::task::block_in_place(|| measure_closed(&config, &binary))?;
        // Kept past this serve, whose directory goes when it stops.
        let kept = tempfile::Builder::new().prefix("hwbench-size-").tempdir()?;
        tokio::task::block_in_place(|| copy_dir(&config.store.path, kept.path()))?;
        serve.stop(&self.broker).await?;
        let filled = Filled {
            create_secs,
            disk_bytes,
            export_bytes,
            lookups: None,
        };
        // serve again on that store, as after a restart.
        let copy = |c: &mut Config| copy_dir(kept.path(), &c.store.path);
        let again =
            Serve::start_with(&binary, &node, &self.settings, &[], &self.broker, copy, &[]).await?;
        let mut r = self.serve_on_store(again, n, filled, &load_before).await?;
        r.name = format!("store-size-api-{n}");
        r.setup = format!(
            "{n} webhooks created through serve's API (POST …/webhooks?verify=false, 10 per \
             organization), {window} requests in flight; serve stopped, the store measured \
             and exported, then a serve started on a copy of it"
        );
        Ok(r)
    }

    /// A node of the scenario's namespace, with a key of its own.
    fn store_size_node(&self) -> Node {
        let namespace = format!("{}-size", self.namespace);
        Node::new(&namespace, std::slice::from_ref(&self.cli.amqp_url))
    }

    /// Readiness and RSS of `serve` on a filled store, then its disk once stopped.
    async fn serve_on_store(
        &mut self,
        mut serve: Serve,
        n: usize,
        filled: Filled,
        load_before: &str,
    ) -> Result<ScenarioResult> {
        let ready_after = serve.ready_after.as_secs_f64();
        let pid = serve.pid();
        let rss_ready = procfs::rss_bytes(pid);
        let idle_until = Instant::now() + Duration::from_secs(self.cli.store_size_idle_secs);
        while Instant::now() < idle_until {
            serve.check_alive()?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let rss_idle = procfs::rss_bytes(pid);
        serve.halt().await?;
        let disk_after_serve = dir_size(&serve.store_path());
        serve.stop(&self.broker).await?;
        let load_after = report::loadavg();
        let per = |bytes: u64| bytes as f64 / n.max(1) as f64;
        let mut notes = vec![
            format!(
                "created {n} in {:.2} s: {:.0} webhooks/s",
                filled.create_secs,
                n as f64 / filled.create_secs.max(1e-9)
            ),
            format!(
                "disk after the store closed: {} MiB ({:.0} B per webhook); `store export`: {} \
                 MiB ({:.0} B per webhook); disk ÷ export {:.2}",
                mib(filled.disk_bytes),
                per(filled.disk_bytes),
                mib(filled.export_bytes),
                per(filled.export_bytes),
                filled.disk_bytes as f64 / filled.export_bytes.max(1) as f64
            ),
            format!(
                "serve on it: ready {ready_after:.2} s after spawn; RSS {} MiB when ready, {} MiB \
                 idle {} s later; disk after serve stopped {} MiB",
                footprint::opt_mib(rss_ready),
                footprint::opt_mib(rss_idle),
                self.cli.store_size_idle_secs,
                mib(disk_after_serve)
            ),
        ];
        if let Some(l) = &filled.lookups {
            notes.push(format!(
                "Store::subscribers: cache miss p50 {:.3} / p99 {:.3} ms ({:.1} webhooks per \
                 lookup), hit (a hot set of {} pairs) p50 {:.4} / p99 {:.4} ms",
                l.miss.p50_ms,
                l.miss.p99_ms,
                l.subscribers_per_lookup,
                store_scenario::HOT_SET,
                l.hit.p50_ms,
                l.hit.p99_ms
            ));
        }
        notes.push(format!(
            "load average (1, 5, 15 min) before {load_before}, after {load_after}"
        ));
        Ok(ScenarioResult {
            events: n,
            expected: n as u64,
            delivered: n as u64,
            secs: filled.create_secs,
            per_sec: n as f64 / filled.create_secs.max(1e-9),
            latency: filled.lookups.as_ref().map(|l| l.miss),
            serve_rss_max_mib: rss_ready.max(rss_idle).map(|b| b as f64 / (1 << 20) as f64),
            serve_rss_end_mib: rss_idle.map(|b| b as f64 / (1 << 20) as f64),
            complete: true,
            notes,
            ..ScenarioResult::named(&format!("store-size-{n}"), "webhooks/s")
        })
    }
}

fn open(config: &Config) -> Result<Store> {
    Ok(Store::open(
        &config.store.path,
        config.store.cache_capacity_bytes,
        &config.secrets_key()?,
    )?)
}

/// Creates webhooks `0..n` of [`webhook`]'s layout through a Writer on the config's store,
/// `window` commits in flight; the seconds it took. The store is closed on return.
async fn create_through_writer(config: &Config, n: usize, window: usize) -> Result<f64> {
    let store = open(config)?;
    let writer = Writer::spawn(store.clone());
    drop(store);
    let max_per_org = config.api.max_webhooks_per_org;
    let started = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for i in 0..n {
        let (sub, writer) = (webhook(i)?, writer.clone());
        inflight.push(async move { writer.commit(Change::Create { sub, max_per_org }).await });
        if inflight.len() >= window {
            inflight.next().await.context("a commit in flight")??;
        }
        if i > 0 && i % 100_000 == 0 {
            eprintln!("  store-size: {i} created");
        }
    }
    while let Some(done) = inflight.next().await {
        done?;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(writer);
    wait_closed(config).await?;
    Ok(secs)
}

/// Waits until the writer's thread has let go of the store: sled locks its directory.
async fn wait_closed(config: &Config) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match open(config) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The closed store's bytes on disk, and those of its `hookwire store export`.
fn measure_closed(config: &Config, binary: &Path) -> Result<(u64, u64)> {
    let disk = dir_size(&config.store.path);
    let dir = tempfile::Builder::new()
        .prefix("hwbench-export-")
        .tempdir()?;
    let (config_path, out) = (dir.path().join("hookwire.toml"), dir.path().join("export"));
    std::fs::write(&config_path, config.to_toml())?;
    let status = std::process::Command::new(binary)
        .args(["store", "export", "--json", "--config"])
        .arg(&config_path)
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "hookwire store export: {status}");
    Ok((disk, std::fs::metadata(&out)?.len()))
}

/// Copies a closed store's directory.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
