//! The scenarios of issue 7. Each builds its subscribers and one `serve`, disturbs it,
//! waits until every expected pair is delivered or dead-lettered (or a deadline passes),
//! stops `serve` gracefully and reads the dead letters from its store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use hookwire_store::Store;
use rand::Rng;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::Ctx;
use crate::broker::close_connections_named;
use crate::ledger::{Dead, Ledger, Outcome, Tally};
use crate::publish::{EVENT, Message, ORG, Sender, publish_paced};
use crate::serve::{ApiClient, Daemon, Settings};
use crate::sink::{Behavior, Disturbing, Sink};

/// One `key=value` figure of a scenario's report.
pub fn note(k: &str, v: impl ToString) -> (String, String) {
    (k.to_owned(), v.to_string())
}

/// Polls the ledger (dead letters through the API) until every pair is settled and
/// `also` holds, or until `deadline`.
pub async fn wait_settled(
    d: &mut Daemon,
    ledger: &Ledger,
    sinks: &[&Sink],
    deadline: Instant,
    allowed: impl Fn(&Dead) -> bool,
    also: impl Fn(&Tally, &[Dead]) -> bool,
) -> Result<Tally> {
    loop {
        d.check_alive()?;
        let dead = d.dead_letters(ORG).await.unwrap_or_default();
        let t = ledger.tally(sinks, &dead, &allowed);
        if (t.settled() && also(&t, &dead)) || Instant::now() > deadline {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Stops serve (SIGTERM must exit 0), then tallies with the store's dead letters.
pub async fn finish(
    d: &mut Daemon,
    ledger: &Ledger,
    sinks: &[&Sink],
    allowed: impl Fn(&Dead) -> bool,
    failures: &mut Vec<String>,
) -> Result<(Tally, Vec<Dead>)> {
    if let Err(e) = d.stop().await {
        failures.push(format!("graceful stop: {e:#}"));
    }
    let store = d.open_store()?;
    let dead: Vec<Dead> = store
        .all_dead_letters()?
        .into_iter()
        .map(Dead::from)
        .collect();
    drop(store);
    let tally = ledger.tally(sinks, &dead, allowed);
    if tally.lost > 0 {
        // Evidence for whoever investigates: where the lost pairs stopped, what is left
        // in the namespace's queues, and serve's log.
        failures.push(format!("lost detail: {}", ledger.lost_detail(sinks, &dead)));
        failures.push(format!(
            "queues: {}",
            crate::broker::queue_depths(&d.config.amqp.namespace)
        ));
        match d.keep_log() {
            Ok(path) => failures.push(format!("serve log kept at {}", path.display())),
            Err(e) => failures.push(format!("serve log not kept: {e:#}")),
        }
    }
    Ok((tally, dead))
}

/// Waits up to 1 s for `sink` to hold a request open (so that a kill catches one in
/// flight); returns how many it holds.
async fn wait_held(sink: &Sink) -> usize {
    let until = Instant::now() + Duration::from_secs(1);
    while sink.in_flight() == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sink.in_flight()
}

/// The sum of every sample of `metric` (any labels) in a Prometheus text exposition.
pub fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

/// What serve's `/metrics` says about deferrals, circuits and tiers, as report notes.
async fn delivery_notes(d: &Daemon) -> Vec<(String, String)> {
    let Ok(text) = async { d.client()?.metrics().await }.await else {
        return vec![note("metrics", "unavailable")];
    };
    let deferred = |cause: &str| {
        metric_sum(
            &text,
            &format!("hookwire_deferrals_total{{cause=\"{cause}\"}}"),
        )
    };
    vec![
        note("deferred_at_capacity", deferred("at_capacity")),
        note("deferred_circuit_open", deferred("circuit_open")),
        note(
            "circuit_transitions",
            metric_sum(&text, "hookwire_circuit_transitions_total"),
        ),
        note(
            "tier_overdue",
            metric_sum(&text, "hookwire_tier_overdue_total"),
        ),
        note(
            "tier_overdue_max_s",
            metric_sum(&text, "hookwire_tier_overdue_max_seconds"),
        ),
    ]
}

/// 1. SIGKILL serve at random moments while events flow, preferably while the slow
///    receiver holds a request open; restart it each time. A half-working receiver (500
///    to every first attempt) is among the subscribers, with its circuit on: every
///    delivery settles within the schedule plus 60 s of the last kill.
pub async fn kill(ctx: &Ctx, events: usize, kills: u32) -> Result<Outcome> {
    let t0 = Instant::now();
    let flaky = Sink::start("flaky", ORG, &[EVENT], Behavior::Flaky).await?;
    let slow = Sink::start("slow", ORG, &[EVENT], Behavior::Slow).await?;
    let healthy = Sink::start("healthy", ORG, &[EVENT], Behavior::Healthy).await?;
    let half = Sink::start("half-working", ORG, &[EVENT], Behavior::HalfWorking).await?;
    let sinks = [&flaky, &slow, &healthy, &half];
    // Events flow at 100 a second and the slow receiver holds each request 1.1 s on
    // average: 128 slots drain ~116 a second, so that what is measured is recovery from
    // the kills (more slots hold more events unacked at a kill: more duplicates). With the default 32 it drains ~29 a second, and a 5,000-event run's slow
    // deliveries take minutes, cycling between the deliveries queue and the deferral tier
    // as `at_capacity` deferrals (none overdue): throughput, not a stall.
    let settings = Settings {
        circuit: true,
        per_endpoint_concurrency: 128,
        concurrency: 256,
        ..Settings::default()
    };
    let subs: Vec<_> = sinks.iter().map(|s| s.sub.clone()).collect();
    let mut d = Daemon::create(ctx, &settings, &subs).await?;
    d.start().await?;
    let mut ledger = Ledger::default();
    let ids = ledger.expect_events("kill", events, &sinks);
    let window = Duration::from_secs_f64((events as f64 / 100.0).max(4.0 * f64::from(kills)));
    let publisher = tokio::spawn(publish_paced(
        ctx.amqp_url.clone(),
        d.config.amqp.namespace.clone(),
        ids,
        window,
    ));
    let gap = window / kills;
    let mut held_at_kill = 0;
    let mut last_kill = Instant::now();
    for _ in 0..kills {
        let pause = rand::rng().random_range(gap.mul_f64(0.3)..gap);
        tokio::time::sleep(pause).await;
        held_at_kill += wait_held(&slow).await;
        d.check_alive()?;
        d.kill()?;
        let disturbing = Disturbing::begin(&sinks);
        last_kill = Instant::now();
        d.start().await?;
        disturbing.end();
    }
    let retried = publisher.await??;
    // A kill leaves the broker alone: its tiers expire on time (the watchdog's
    // `tier_overdue` says so), and no delivery waits without an attempt longer than the
    // circuit's deferral bound, so the schedule plus 60 s is enough.
    let deadline = last_kill + settings.total() + Duration::from_secs(60);
    let t = wait_settled(&mut d, &ledger, &sinks, deadline, |_| false, |_, _| true).await?;
    let settled_after = last_kill.elapsed();
    let mut failures = Vec::new();
    if !t.settled() {
        failures.push(format!(
            "not settled within the schedule + 60 s of the last kill; queues: {}",
            crate::broker::queue_depths(&d.config.amqp.namespace)
        ));
    }
    let metrics = delivery_notes(&d).await;
    let (tally, _) = finish(&mut d, &ledger, &sinks, |_| false, &mut failures).await?;
    if d.kills < 5 {
        failures.push(format!("only {} kills", d.kills));
    }
    Ok(Outcome {
        name: "kill".into(),
        tally,
        notes: vec![
            note("events", events),
            note("kills", d.kills),
            note("restarts", d.starts - 1),
            note("held_open_at_kills", held_at_kill),
            note(
                "settled_s_after_last_kill",
                format!("{:.0}", settled_after.as_secs_f64()),
            ),
            note("republished", retried),
            note(
                "requests",
                sinks.iter().map(|s| s.received()).sum::<usize>(),
            ),
        ]
        .into_iter()
        .chain(metrics)
        .collect(),
        failures,
        wall: t0.elapsed(),
        must_lose: None,
    })
}

/// The ledger's self-test: `events` events expected at one healthy receiver, all but one
/// (a random one) published. Once the others are delivered (and 2 s more, for a straggler),
/// `serve` is stopped and the ledger must report exactly that pair lost. The outcome
/// carries the dropped pair in [`Outcome::must_lose`]: on its own (`drop-one`) the run
/// fails with `1 lost`; in `ci` and `all` that failure is required, and anything else
/// fails the run.
pub async fn drop_one(ctx: &Ctx, events: usize) -> Result<Outcome> {
    let t0 = Instant::now();
    let healthy = Sink::start("healthy", ORG, &[EVENT], Behavior::Healthy).await?;
    let sinks = [&healthy];
    let mut d = Daemon::create(
        ctx,
        &Settings::default(),
        std::slice::from_ref(&healthy.sub),
    )
    .await?;
    d.start().await?;
    let mut ledger = Ledger::default();
    let mut ids = ledger.expect_events("dropone", events.max(2), &sinks);
    let dropped = ids.remove(rand::rng().random_range(0..ids.len()));
    let published = ids.len();
    publish_paced(
        ctx.amqp_url.clone(),
        d.config.amqp.namespace.clone(),
        ids,
        Duration::from_secs(1),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger.tally(&sinks, &[], |_| false).delivered < published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut failures = Vec::new();
    if let Err(e) = d.stop().await {
        failures.push(format!("graceful stop: {e:#}"));
    }
    let dead: Vec<Dead> = d
        .open_store()?
        .all_dead_letters()?
        .into_iter()
        .map(Dead::from)
        .collect();
    let tally = ledger.tally(&sinks, &dead, |_| false);
    Ok(Outcome {
        name: "drop-one".into(),
        notes: vec![
            note("events", events.max(2)),
            note("published", published),
            note("dropped", &dropped),
        ],
        tally,
        failures,
        wall: t0.elapsed(),
        must_lose: Some(hookwire_core::event::webhook_id(&dropped, &healthy.sub.id)),
    })
}

/// 2. Stop and start the broker app mid-run, then close hookwire's connections; wait the
///    whole schedule plus 60 s after the restart before counting anything lost (the broker's
///    dead-letter worker confirm timeout is 15 s: deploy/rabbitmq/advanced.config).
pub async fn broker_restart(ctx: &Ctx, events: usize) -> Result<Outcome> {
    let t0 = Instant::now();
    let flaky = Sink::start("flaky", ORG, &[EVENT], Behavior::Flaky).await?;
    let healthy = Sink::start("healthy", ORG, &[EVENT], Behavior::Healthy).await?;
    let sinks = [&flaky, &healthy];
    let settings = Settings::default();
    let subs: Vec<_> = sinks.iter().map(|s| s.sub.clone()).collect();
    let mut d = Daemon::create(ctx, &settings, &subs).await?;
    d.start().await?;
    let mut ledger = Ledger::default();
    let ids = ledger.expect_events("broker", events, &sinks);
    let window = Duration::from_secs_f64((events as f64 / 50.0).max(15.0));
    let publisher = tokio::spawn(publish_paced(
        ctx.amqp_url.clone(),
        d.config.amqp.namespace.clone(),
        ids,
        window,
    ));
    let mut failures = Vec::new();
    tokio::time::sleep(window / 3).await;
    let disturbing = Disturbing::begin(&sinks);
    {
        let _guard = ctx.app.stop_app()?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        // The guard starts the app and waits for it.
    }
    let restarted_at = Instant::now();
    let resumed_after_restart = consuming_again(&d, restarted_at).await;
    disturbing.end();
    tokio::time::sleep(window / 3).await;
    d.check_alive()?;
    let disturbing = Disturbing::begin(&sinks);
    let closed = close_hookwire_connections(&d).await?;
    if closed == 0 {
        failures.push("no hookwire connection to close after the restart".into());
    }
    let closed_at = Instant::now();
    let resumed_after_close = consuming_again(&d, closed_at).await;
    disturbing.end();
    let retried = publisher.await??;
    // The broker's at-least-once dead-letter worker retries only every few minutes.
    let deadline = restarted_at.max(closed_at) + settings.total() + Duration::from_secs(60);
    wait_settled(
        &mut d,
        &ledger,
        &sinks,
        deadline.max(Instant::now() + Duration::from_secs(30)),
        |_| false,
        |_, _| true,
    )
    .await?;
    let settled_after = closed_at.elapsed();
    let (tally, _) = finish(&mut d, &ledger, &sinks, |_| false, &mut failures).await?;
    Ok(Outcome {
        name: "broker-restart".into(),
        tally,
        notes: vec![
            note("events", events),
            note("app_restarts", 1),
            note("connections_closed", closed),
            note("consuming_s_after_restart", resumed_after_restart),
            note("consuming_s_after_close", resumed_after_close),
            note(
                "settled_s_after_close",
                format!("{:.0}", settled_after.as_secs_f64()),
            ),
            note("serve_starts", d.starts),
            note("republished", retried),
        ],
        failures,
        wall: t0.elapsed(),
        must_lose: None,
    })
}

/// Waits (a minute at most) until serve consumes again after its broker session broke:
/// `/readyz` answers 200. Returns how long that took from `since`, as a report figure
/// (`-` when it did not within the minute).
pub async fn consuming_again(d: &Daemon, since: Instant) -> String {
    // The session may not have noticed the break yet: give it a moment to.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if matches!(d.api(Method::GET, "/readyz", None).await, Ok((200, _))) {
            return format!("{:.1}", since.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    "-".into()
}

/// Closes serve's own connections, found by their connection name; retried for up to
/// 10 s while it is still reconnecting (after a broker restart). Returns how many.
pub async fn close_hookwire_connections(d: &Daemon) -> Result<usize> {
    for _ in 0..50 {
        let name = d.connection_name().to_owned();
        // rabbitmqctl takes a second or two: off the runtime's workers, which the
        // receivers need.
        let closed = tokio::task::spawn_blocking(move || close_connections_named(&name)).await??;
        if closed > 0 {
            return Ok(closed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(0)
}

/// 3. One receiver is down for several tiers but less than the schedule (everything
///    arrives, nothing dies), then for longer than the schedule (exactly those deliveries
///    die as `exhausted`), and replaying them delivers them.
pub async fn outage(ctx: &Ctx, events: usize) -> Result<Outcome> {
    let t0 = Instant::now();
    let steady = Sink::start("steady", ORG, &[EVENT], Behavior::Healthy).await?;
    let target = Sink::start("target", ORG, &[EVENT], Behavior::Healthy).await?;
    let sinks = [&steady, &target];
    // Cumulative 1, 3, 6, 11 s (× 1.25 at most with jitter).
    let settings = Settings {
        schedule: vec![1, 2, 3, 5],
        ..Settings::default()
    };
    let subs: Vec<_> = sinks.iter().map(|s| s.sub.clone()).collect();
    let mut d = Daemon::create(ctx, &settings, &subs).await?;
    d.start().await?;
    let tag = Uuid::now_v7().simple().to_string()[20..].to_owned();
    let mut ledger = Ledger::default();
    let mut failures = Vec::new();
    let ns = d.config.amqp.namespace.clone();

    // Phase 1: down 7 s, past three tiers (1, 2, 3 s) but short of the 11 s schedule.
    let n1 = events / 2;
    let ids1: Vec<String> = (0..n1).map(|i| format!("outage1-{tag}-{i}")).collect();
    for id in &ids1 {
        ledger.expect(id, &sinks);
    }
    target.set_down(true);
    let down_at = Instant::now();
    publish_paced(
        ctx.amqp_url.clone(),
        ns.clone(),
        ids1,
        Duration::from_secs(5),
    )
    .await?;
    tokio::time::sleep_until((down_at + Duration::from_secs(7)).into()).await;
    target.set_down(false);
    let deadline = Instant::now() + settings.total() + Duration::from_secs(60);
    let t1 = wait_settled(
        &mut d,
        &ledger,
        &sinks,
        deadline,
        |_| false,
        |t, _| t.delivered == t.expected,
    )
    .await?;
    if t1.delivered != t1.expected || !t1.dead_by_reason.is_empty() {
        failures.push(format!(
            "short outage: {} of {} delivered, dead {:?}",
            t1.delivered, t1.expected, t1.dead_by_reason
        ));
    }

    // Phase 2: down for longer than the whole schedule.
    let n2 = events - n1;
    let ids2: Vec<String> = (0..n2).map(|i| format!("outage2-{tag}-{i}")).collect();
    for id in &ids2 {
        ledger.expect(id, &sinks);
    }
    let phase2: HashSet<String> = ids2
        .iter()
        .map(|id| hookwire_core::event::webhook_id(id, &target.sub.id))
        .collect();
    target.set_down(true);
    publish_paced(ctx.amqp_url.clone(), ns, ids2, Duration::from_secs(1)).await?;
    let is_phase2 = |x: &Dead| {
        x.reason == "exhausted"
            && x.subscription == Some(target.sub.id)
            && x.event_id.as_ref().is_some_and(|e| {
                phase2.contains(&hookwire_core::event::webhook_id(e, &target.sub.id))
            })
    };
    let deadline = Instant::now() + settings.total() + Duration::from_secs(60);
    let t2 = wait_settled(&mut d, &ledger, &sinks, deadline, is_phase2, |_, dead| {
        dead.len() >= n2
    })
    .await?;
    let dead2 = d.dead_letters(ORG).await?;
    let exact = dead2.len() == n2 && dead2.iter().all(is_phase2);
    if !exact || t2.unexpected_dead > 0 {
        failures.push(format!(
            "long outage: {} dead letters, expected exactly the {n2} deliveries to the down receiver",
            dead2.len()
        ));
    }
    target.set_down(false);
    let (status, body) = d
        .api(
            Method::POST,
            &format!("/v1/orgs/{ORG}/dead-letters/replay"),
            Some(&json!({"since": "2000-01-01T00:00:00Z"})),
        )
        .await?;
    let replayed = body["replayed"].as_array().map_or(0, Vec::len);
    if status != 200 || replayed != n2 {
        failures.push(format!(
            "replay answered {status}, replayed {replayed} of {n2}: {body}"
        ));
    }
    let deadline = Instant::now() + settings.total() + Duration::from_secs(60);
    wait_settled(
        &mut d,
        &ledger,
        &sinks,
        deadline,
        |_| false,
        |t, dead| t.delivered == t.expected && dead.is_empty(),
    )
    .await?;
    let (tally, _) = finish(&mut d, &ledger, &sinks, |_| false, &mut failures).await?;
    if tally.delivered != tally.expected {
        failures.push(format!(
            "{} of {} delivered after the replay",
            tally.delivered, tally.expected
        ));
    }
    Ok(Outcome {
        name: "outage".into(),
        tally,
        notes: vec![
            note("events", events),
            note("short_outage_s", 7),
            note("long_outage_dead_exhausted", dead2.len()),
            note("replayed", replayed),
        ],
        failures,
        wall: t0.elapsed(),
        must_lose: None,
    })
}

/// A dead letter of a broken message, with the reason it was broken for.
pub fn is_poison(broken: &HashMap<String, &'static str>, x: &Dead) -> bool {
    x.event_id
        .as_ref()
        .and_then(|e| broken.get(e))
        .is_some_and(|r| *r == x.reason)
}

/// Broken messages that are not archived with their reason.
pub fn unarchived(broken: &HashMap<String, &'static str>, dead: &[Dead]) -> usize {
    let archived: HashSet<&str> = dead
        .iter()
        .filter(|x| is_poison(broken, x))
        .filter_map(|x| x.event_id.as_deref())
        .collect();
    broken
        .keys()
        .filter(|id| !archived.contains(id.as_str()))
        .count()
}

/// 4. One message in ten breaks the wire contract: the good ones are delivered, the
///    broken ones are archived with their reason, and serve never restarts.
pub async fn poison(ctx: &Ctx, events: usize) -> Result<Outcome> {
    let t0 = Instant::now();
    let healthy = Sink::start("healthy", ORG, &[EVENT], Behavior::Healthy).await?;
    let sinks = [&healthy];
    let settings = Settings::default();
    let mut d = Daemon::create(ctx, &settings, std::slice::from_ref(&healthy.sub)).await?;
    d.start().await?;
    let pid = d.pid();
    let mut sender = Sender::new(&ctx.amqp_url, &d.config.amqp.namespace);
    let prefix = format!("poison-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let mut ledger = Ledger::default();
    let mut broken: HashMap<String, &'static str> = HashMap::new();
    for i in 0..events {
        let message = Message::nth(&prefix, i, 10);
        sender.send(&message).await?;
        match message {
            Message::Good(id) => ledger.expect(&id, &sinks),
            Message::Broken(id, kind) => {
                broken.insert(id, kind);
            }
        }
    }
    sender.close().await;
    let allowed = |x: &Dead| is_poison(&broken, x);
    let deadline = Instant::now() + settings.total() + Duration::from_secs(60);
    wait_settled(&mut d, &ledger, &sinks, deadline, allowed, |_, dead| {
        dead.len() >= broken.len()
    })
    .await?;
    let mut failures = Vec::new();
    if d.pid() != pid || d.starts != 1 {
        failures.push("serve restarted".into());
    }
    let (tally, dead) = finish(&mut d, &ledger, &sinks, allowed, &mut failures).await?;
    let missing = unarchived(&broken, &dead);
    if missing > 0 {
        failures.push(format!(
            "{missing} broken message(s) not archived with their reason"
        ));
    }
    Ok(Outcome {
        name: "poison".into(),
        tally,
        notes: vec![
            note("events", events),
            note("broken", broken.len()),
            note("serve_starts", d.starts),
        ],
        failures,
        wall: t0.elapsed(),
        must_lose: None,
    })
}

/// What the API acknowledged about one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// Created (201).
    Created,
    /// Deleted (2xx).
    Deleted,
    /// A delete was in flight at the kill: either state is right.
    Unknown,
}

/// Six API clients that create (`?verify=false`, pointing at `url`) and delete webhooks of
/// `org` until `stop`, counting acknowledged changes in `done`. Each returns what the API
/// acknowledged.
fn api_burst(
    api: &ApiClient,
    org: &str,
    url: &str,
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicUsize>,
) -> tokio::task::JoinSet<Vec<(Uuid, Acked)>> {
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let (api, stop, done) = (api.clone(), stop.clone(), done.clone());
        let (org, url) = (org.to_owned(), url.to_owned());
        workers.spawn(async move {
            let mut mine: Vec<Uuid> = Vec::new();
            let mut log: Vec<(Uuid, Acked)> = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                if n.is_multiple_of(3) && !mine.is_empty() {
                    let id = mine.swap_remove(rand::rng().random_range(0..mine.len()));
                    let path = format!("/v1/orgs/{org}/webhooks/{id}");
                    match api.request(Method::DELETE, &path, None).await {
                        Ok((s, _)) if (200..300).contains(&s) => {
                            log.push((id, Acked::Deleted));
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => log.push((id, Acked::Unknown)),
                    }
                } else {
                    let body = json!({"url": url, "description": format!("chaos {w}-{n}"), "events": [EVENT]});
                    let path = format!("/v1/orgs/{org}/webhooks?verify=false");
                    if let Ok((201, v)) = api.request(Method::POST, &path, Some(&body)).await
                        && let Some(id) = v["id"].as_str().and_then(|s| s.parse().ok())
                    {
                        mine.push(id);
                        log.push((id, Acked::Created));
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            log
        });
    }
    workers
}

/// SIGKILLs the running serve in the middle of an API burst on `org`: after `target`
/// acknowledged changes (or 60 s), and, given `hold`, preferably while that receiver holds
/// a request open. Returns what the API acknowledged, and the requests held open.
pub async fn crash_mid_burst(
    d: &mut Daemon,
    org: &str,
    url: &str,
    target: usize,
    hold: Option<&Sink>,
) -> Result<(Vec<(Uuid, Acked)>, usize)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = api_burst(&d.client()?, org, url, &stop, &done);
    let until = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < target && Instant::now() < until {
        d.check_alive()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let held = match hold {
        Some(sink) => wait_held(sink).await,
        None => 0,
    };
    d.check_alive()?;
    d.kill()?;
    stop.store(true, Ordering::SeqCst);
    let mut log = Vec::new();
    while let Some(part) = workers.join_next().await {
        log.extend(part?);
    }
    Ok((log, held))
}

/// Every webhook of `org`, following the list's pages as an API user must.
pub async fn list_all_webhooks(d: &Daemon, org: &str) -> Result<HashSet<Uuid>> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/orgs/{org}/webhooks?limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = d.api(Method::GET, &path, None).await?;
        anyhow::ensure!(status == 200, "GET {path} answered {status}: {body}");
        ids.extend(
            body["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w["id"].as_str().and_then(|s| s.parse::<Uuid>().ok())),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(ids),
        }
    }
}

/// Checks a store (serve stopped) against what the API acknowledged for `org`: how many
/// webhooks are as acknowledged, and a line for each one that is not.
pub fn check_store(
    store: &Store,
    org: &str,
    state: &HashMap<Uuid, Acked>,
) -> Result<(usize, Vec<String>)> {
    let mut verified = 0;
    let mut wrong = Vec::new();
    for (id, acked) in state {
        let present = store.get(org, id)?.is_some();
        match acked {
            Acked::Created if !present => wrong.push(format!("acknowledged webhook {id} is gone")),
            Acked::Deleted if present => wrong.push(format!("deleted webhook {id} is back")),
            Acked::Unknown => {}
            _ => verified += 1,
        }
    }
    Ok((verified, wrong))
}

/// 5. SIGKILL serve during a burst of webhook creations and deletions; the store must
///    open, and hold every change the API acknowledged.
pub async fn store_crash(ctx: &Ctx, changes: usize, rounds: u32) -> Result<Outcome> {
    let t0 = Instant::now();
    let receiver = hookwire_testkit::Receiver::ok().await;
    let mut d = Daemon::create(ctx, &Settings::default(), &[]).await?;
    let mut state: HashMap<Uuid, Acked> = HashMap::new();
    let mut failures = Vec::new();
    let mut acked_changes = 0;
    let mut verified = 0;
    let mut lost = 0;
    let per_round = (changes / rounds.max(1) as usize).max(20);
    for round in 0..rounds {
        d.start().await?;
        // Kill at a random moment of the burst.
        let target = rand::rng().random_range(per_round / 2..=per_round);
        let (log, _) = crash_mid_burst(&mut d, ORG, &receiver.url(), target, None).await?;
        for (id, acked) in log {
            if acked != Acked::Unknown {
                acked_changes += 1;
            }
            state.insert(id, acked);
        }
        let store = match d.open_store() {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("round {round}: {e:#}"));
                break;
            }
        };
        let (ok, wrong) = check_store(&store, ORG, &state)?;
        verified += ok;
        lost += wrong.len();
        failures.extend(wrong.into_iter().map(|w| format!("round {round}: {w}")));
        drop(store);
    }
    // serve itself opens the store after the last crash and lists the same webhooks.
    d.start().await?;
    let listed = list_all_webhooks(&d, ORG).await;
    let should: HashSet<Uuid> = state
        .iter()
        .filter(|(_, a)| **a == Acked::Created)
        .map(|(id, _)| *id)
        .collect();
    match listed {
        Ok(listed) if should.is_subset(&listed) => {}
        Ok(listed) => failures.push(format!(
            "after restart the API lists {} webhooks, {} acknowledged ones missing",
            listed.len(),
            should.difference(&listed).count()
        )),
        Err(e) => failures.push(format!("after restart, listing webhooks: {e:#}")),
    }
    if let Err(e) = d.stop().await {
        failures.push(format!("graceful stop: {e:#}"));
    }
    failures.truncate(10);
    Ok(Outcome {
        name: "store-crash".into(),
        tally: Tally {
            expected: acked_changes,
            delivered: acked_changes.saturating_sub(lost),
            lost,
            ..Tally::default()
        },
        notes: vec![
            note("acked_changes", acked_changes),
            note("checks", verified),
            note("kills", d.kills),
            note("webhooks_left", should.len()),
        ],
        failures,
        wall: t0.elapsed(),
        must_lose: None,
    })
}
