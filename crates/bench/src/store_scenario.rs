//! The `store` scenario: many subscriptions in sled, then the delivery hot path's lookup
//! (`Store::subscribers`) timed one call at a time, and the store's size on disk.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use hookwire_core::Subscription;
use hookwire_store::{Change, Store};
use serde::Serialize;

use crate::serve::subscription;
use crate::tally::Percentiles;

/// Event types of the catalog the subscriptions are spread over.
const EVENTS: [&str; 5] = [
    "report_created",
    "report_run_started",
    "report_run_completed",
    "definition_created",
    "definition_updated",
];
/// Subscriptions per organization.
const PER_ORG: usize = 10;

/// What the `store` scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreResult {
    /// Subscriptions in the store.
    pub subscriptions: usize,
    /// Organizations they belong to.
    pub orgs: usize,
    /// Seconds to insert them all, one `apply(Change::Upsert)` each, then flush.
    pub insert_secs: f64,
    /// Bytes of the store's files after the flush.
    pub disk_bytes: u64,
    /// Lookups timed.
    pub lookups: usize,
    /// Subscriptions one lookup returned, on average.
    pub subscribers_per_lookup: f64,
    /// Seconds the lookups took in all.
    pub lookup_secs: f64,
    /// Time of one lookup of a random (org, event type): nearly always a miss of the
    /// decoded-subscriber cache, so sled and decoding.
    pub resolve: Percentiles,
    /// Time of one lookup in a working set of [`HOT_SET`] (org, event type) pairs that
    /// fits the cache: what a steady stream of events from active orgs costs.
    pub resolve_cached: Percentiles,
}

/// (org, event type) pairs of the cached lookups.
pub const HOT_SET: usize = 1_000;

/// Fills a fresh store with `subscriptions` (10 per organization, two per event type and
/// organization), then times `lookups` random (org, event type) lookups.
pub fn run(subscriptions: usize, lookups: usize, cache_capacity_bytes: u64) -> Result<StoreResult> {
    let dir = tempfile::Builder::new()
        .prefix("hwbench-store-")
        .tempdir()?;
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let store = Store::open(dir.path(), cache_capacity_bytes, &key)?;
    let orgs = subscriptions.div_ceil(PER_ORG).max(1);
    let started = Instant::now();
    for i in 0..subscriptions {
        store.apply(Change::Upsert(webhook(i)?))?;
        if i > 0 && i % 100_000 == 0 {
            eprintln!("  store: {i} subscriptions inserted");
        }
    }
    store.flush()?;
    let insert_secs = started.elapsed().as_secs_f64();
    let disk_bytes = dir_size(dir.path());
    let timed = time_lookups(&store, subscriptions, lookups)?;
    Ok(StoreResult {
        subscriptions,
        orgs,
        insert_secs,
        disk_bytes,
        lookups,
        subscribers_per_lookup: timed.subscribers_per_lookup,
        lookup_secs: timed.secs,
        resolve: timed.miss,
        resolve_cached: timed.hit,
    })
}

/// Webhook `i` of the layout the store scenarios fill: organization `i / 10`, one event
/// type of [`EVENTS`] in turn.
pub fn webhook(i: usize) -> Result<Subscription> {
    let mut sub = subscription(
        &org_name(i / PER_ORG),
        &format!("https://hooks.example.com/{i}"),
    )?;
    sub.events = vec![EVENTS[i % EVENTS.len()].into()];
    Ok(sub)
}

/// What [`time_lookups`] measured.
#[derive(Debug, Clone)]
pub struct Lookups {
    /// Subscriptions one random lookup returned, on average.
    pub subscribers_per_lookup: f64,
    /// Seconds the random lookups took in all.
    pub secs: f64,
    /// One lookup of a random pair: nearly always a miss of the decoded-subscriber cache.
    pub miss: Percentiles,
    /// One lookup in a hot set of [`HOT_SET`] pairs, cached.
    pub hit: Percentiles,
}

/// Times `lookups` random (org, event type) lookups in a store holding webhooks
/// `0..subscriptions` of [`webhook`]'s layout, checking each answer, then as many in a
/// hot set.
pub fn time_lookups(store: &Store, subscriptions: usize, lookups: usize) -> Result<Lookups> {
    let orgs = subscriptions.div_ceil(PER_ORG).max(1);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64: enough to pick lookups, and the same sequence every run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut samples, mut found) = (Vec::with_capacity(lookups), 0usize);
    let started = Instant::now();
    for _ in 0..lookups {
        let o = next() as usize % orgs;
        let e = next() as usize % EVENTS.len();
        let (org, event) = (org_name(o), EVENTS[e]);
        let t = Instant::now();
        let subs = store.subscribers(&org, event)?;
        samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        // What was stored for the pair, so that a lookup that finds nothing cannot pass
        // for a fast one.
        let stored = (o * PER_ORG..((o + 1) * PER_ORG).min(subscriptions))
            .filter(|i| i % EVENTS.len() == e)
            .count();
        let right = subs
            .iter()
            .all(|sub| sub.org == org && sub.events.iter().any(|x| x == event));
        if subs.len() != stored || !right {
            bail!(
                "store: the lookup of ({org}, {event}) found {} subscription(s), {stored} stored",
                subs.len()
            );
        }
        found += subs.len();
    }
    let lookup_secs = started.elapsed().as_secs_f64();
    // The hot set: a first pass fills the cache, the second is timed.
    let hot: Vec<(String, &str)> = (0..HOT_SET)
        .map(|_| {
            (
                org_name(next() as usize % orgs),
                EVENTS[next() as usize % EVENTS.len()],
            )
        })
        .collect();
    let mut cached = Vec::with_capacity(lookups);
    for pass in 0..2 {
        for i in 0..lookups {
            let (org, event) = &hot[i % HOT_SET];
            let t = Instant::now();
            let subs = store.subscribers(org, event)?;
            if pass == 1 {
                cached.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            std::hint::black_box(subs);
        }
    }
    Ok(Lookups {
        subscribers_per_lookup: found as f64 / lookups.max(1) as f64,
        secs: lookup_secs,
        miss: Percentiles::of(samples),
        hit: Percentiles::of(cached),
    })
}

pub fn org_name(i: usize) -> String {
    format!("org-{i:07}")
}

pub(crate) fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
