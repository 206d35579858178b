//! The soak (scenario 6): every disturbance of the other scenarios, in turn, at a modest
//! steady rate for a long time, while `serve`'s RSS and open fds are sampled. Same ledger
//! and verdict as the others, plus: neither resource may grow without bound
//! ([`crate::resources`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::Method;
use uuid::Uuid;

use crate::Ctx;
use crate::ledger::{Dead, Ledger, Outcome};
use crate::publish::{Message, ORG, Sender};
use crate::resources::{self, Sampler};
use crate::scenarios::{
    Acked, check_store, close_hookwire_connections, consuming_again, crash_mid_burst, finish,
    is_poison, note, unarchived,
};
use crate::serve::{Daemon, Settings};
use crate::sink::{Behavior, Disturbing, Sink};

/// The organization of the API bursts' webhooks: no event is published for it, so the
/// webhooks they leave behind never add deliveries.
const API_ORG: &str = "soak-api";

/// The short outage: past three tiers (1, 2, 3 s) but short of the 11 s schedule.
const OUTAGE: Duration = Duration::from_secs(7);

/// How often RSS and fds are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The soak's knobs.
#[derive(Debug, Clone, Copy)]
pub struct Soak {
    /// How long events are published and disturbances run (the drain comes after).
    pub duration: Duration,
    /// Events per second.
    pub rate: u32,
    /// The time between two disturbances.
    pub every: Duration,
    /// One message in this many is broken; none when 0.
    pub broken_every: usize,
}

/// The disturbances, in the order they recur.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disturbance {
    /// SIGKILL serve in the middle of an API burst, preferably while the slow receiver
    /// holds a request open; check the store against the acknowledged changes; restart.
    Kill,
    /// Close hookwire's broker connections by name.
    CloseConnections,
    /// One receiver answers 503 for less than the schedule.
    Outage,
    /// `rabbitmqctl stop_app`, 5 s, `start_app`.
    BrokerRestart,
}

const CYCLE: [Disturbance; 4] = [
    Disturbance::Kill,
    Disturbance::CloseConnections,
    Disturbance::Outage,
    Disturbance::BrokerRestart,
];

/// What the publisher sent.
#[derive(Debug, Default)]
struct Published {
    good: Vec<String>,
    broken: HashMap<String, &'static str>,
    retried: u32,
}

/// Publishes `rate` messages a second until `end` (one in `broken_every` broken); a publish held up
/// by a broker restart delays the rest instead of bursting to catch up.
async fn publish_steady(
    url: String,
    namespace: String,
    prefix: String,
    rate: u32,
    broken_every: usize,
    end: Instant,
) -> Result<Published> {
    let mut sender = Sender::new(&url, &namespace);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Published::default();
    for i in 0.. {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let message = Message::nth(&prefix, i, broken_every);
        sender.send(&message).await?;
        match message {
            Message::Good(id) => out.good.push(id),
            Message::Broken(id, kind) => {
                out.broken.insert(id, kind);
            }
        }
    }
    out.retried = sender.retried;
    sender.close().await;
    Ok(out)
}

/// Counts of what the disturbances did.
#[derive(Debug, Default)]
struct Done {
    kills: u32,
    connections_closed: usize,
    close_rounds: u32,
    outages: u32,
    app_restarts: u32,
    held_open_at_kills: usize,
    api_acked: usize,
    api_checked: usize,
    api_wrong: usize,
}

/// Runs the soak.
pub async fn soak(ctx: &Ctx, soak: Soak) -> Result<Outcome> {
    let t0 = Instant::now();
    // The kill scenario's receivers: flaky 500s at most twice per webhook-id, so the
    // schedule never runs out; slow ones hold requests open at the kills.
    let flaky = Sink::start("flaky", ORG, &[crate::publish::EVENT], Behavior::Flaky).await?;
    let slow = Sink::start("slow", ORG, &[crate::publish::EVENT], Behavior::Slow).await?;
    let healthy = Sink::start("healthy", ORG, &[crate::publish::EVENT], Behavior::Healthy).await?;
    let sinks = [&flaky, &slow, &healthy];
    let api_target = hookwire_testkit::Receiver::ok().await;
    let rate = soak.rate.max(1) as usize;
    let settings = Settings {
        schedule: vec![1, 2, 3, 5],
        // The slow receiver holds each request 1.1 s on average: room for three times the
        // rate keeps it from falling behind, and the backlog after a kill drains.
        per_endpoint_concurrency: (rate * 3).max(32),
        concurrency: (rate * 6).max(64),
        circuit: false,
        attempts_per_webhook: None,
    };
    let subs: Vec<_> = sinks.iter().map(|s| s.sub.clone()).collect();
    let mut d = Daemon::create(ctx, &settings, &subs).await?;
    d.start().await?;
    let sampler = Sampler::start(d.pid_watch(), SAMPLE_EVERY);
    let load_start = sampler.elapsed();
    let end = Instant::now() + soak.duration;
    let prefix = format!("soak-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let publisher = tokio::spawn(publish_steady(
        ctx.amqp_url.clone(),
        d.config.amqp.namespace.clone(),
        prefix,
        soak.rate,
        soak.broken_every,
        end,
    ));

    let mut failures = Vec::new();
    let mut notes_path = None;
    let mut done = Done::default();
    let mut last = Instant::now();
    let mut next = Instant::now() + soak.every;
    let mut turn = 0;
    // No disturbance starts in the last interval: its effects must be over with the load.
    while next + soak.every <= end {
        tokio::time::sleep_until(next.into()).await;
        if publisher.is_finished() {
            break;
        }
        d.check_alive()?;
        let what = CYCLE[turn % CYCLE.len()];
        match what {
            Disturbance::Kill => kill(&mut d, &api_target.url(), &sinks, &mut done, &mut failures)
                .await
                .context("kill")?,
            Disturbance::CloseConnections => {
                let disturbing = Disturbing::begin(&sinks);
                let closed = close_hookwire_connections(&d).await?;
                if closed == 0 {
                    failures.push(format!("close {turn}: no hookwire connection to close"));
                }
                consuming_again(&d, Instant::now()).await;
                disturbing.end();
                done.connections_closed += closed;
                done.close_rounds += 1;
            }
            Disturbance::Outage => {
                healthy.set_down(true);
                tokio::time::sleep(OUTAGE).await;
                healthy.set_down(false);
                done.outages += 1;
            }
            Disturbance::BrokerRestart => {
                let app = ctx.app.clone();
                let disturbing = Disturbing::begin(&sinks);
                // rabbitmqctl blocks: off the runtime's workers, which the receivers need.
                // The guard starts the app again, whatever happens.
                tokio::task::spawn_blocking(move || -> Result<()> {
                    let _guard = app.stop_app()?;
                    std::thread::sleep(Duration::from_secs(5));
                    Ok(())
                })
                .await??;
                consuming_again(&d, Instant::now()).await;
                disturbing.end();
                done.app_restarts += 1;
            }
        }
        last = Instant::now();
        turn += 1;
        next = (next + soak.every).max(Instant::now() + soak.every / 2);
    }
    let published = publisher.await??;
    let load_end = sampler.elapsed();

    let mut ledger = Ledger::default();
    for id in &published.good {
        ledger.expect(id, &sinks);
    }
    let broken = &published.broken;
    let allowed = |x: &Dead| is_poison(broken, x);
    // As in `kill` and `broker-restart`: the schedule plus 60 s of the last disturbance.
    let deadline = (last + settings.total() + Duration::from_secs(60))
        .max(Instant::now() + Duration::from_secs(30));
    // Only the receivers are polled: the dead-letter listing returns every archived body
    // (tens of MiB after a long soak), which would inflate the very RSS being measured.
    // The dead letters are read once, from the store, after the stop.
    loop {
        d.check_alive()?;
        if ledger.tally(&sinks, &[], |_| false).settled() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let drained_after = sampler.elapsed() - load_end;
    let after = sampler.sample_now();
    let samples = sampler.finish();
    let (tally, dead) = finish(&mut d, &ledger, &sinks, allowed, &mut failures).await?;
    let missing = unarchived(broken, &dead);
    if missing > 0 {
        failures.push(format!(
            "{missing} broken message(s) not archived with their reason"
        ));
    }
    if done.api_wrong > 0 {
        failures.push(format!(
            "{} acknowledged API change(s) lost",
            done.api_wrong
        ));
    }
    let verdict = resources::judge(&samples, load_end, after);
    let csv = std::env::temp_dir().join(format!("{}-resources.csv", d.config.amqp.namespace));
    match resources::write_csv(&csv, &samples) {
        Ok(()) => notes_path = Some(csv.display().to_string()),
        Err(e) => eprintln!("chaos: writing {}: {e:#}", csv.display()),
    }
    failures.extend(verdict.failures);
    failures.truncate(20);
    let mut notes = vec![
        note("events", published.good.len() + published.broken.len()),
        note("broken", published.broken.len()),
        note("rate", soak.rate),
        note(
            "load_s",
            format!("{:.0}", (load_end - load_start).as_secs_f64()),
        ),
        note("drain_s", format!("{:.0}", drained_after.as_secs_f64())),
        note("kills", d.kills),
        note("restarts", d.starts - 1),
        note("held_open_at_kills", done.held_open_at_kills),
        note("connection_closes", done.close_rounds),
        note("connections_closed", done.connections_closed),
        note("outages", done.outages),
        note("app_restarts", done.app_restarts),
        note("api_changes_acked", done.api_acked),
        note("api_checks", done.api_checked),
        note("api_lost", done.api_wrong),
        note("republished", published.retried),
        note(
            "requests",
            sinks.iter().map(|s| s.received()).sum::<usize>(),
        ),
    ];
    notes.extend(verdict.notes);
    if let Some(path) = notes_path {
        notes.push(note("samples_csv", path));
    }
    Ok(Outcome {
        name: "soak".into(),
        tally,
        notes,
        failures,
        wall: t0.elapsed(),
        must_lose: None,
    })
}

/// The kill disturbance: SIGKILL mid API burst, the store checked against what the API
/// acknowledged, serve restarted, and the round's webhooks deleted again so that the
/// store does not grow over the run.
async fn kill(
    d: &mut Daemon,
    url: &str,
    sinks: &[&Sink; 3],
    done: &mut Done,
    failures: &mut Vec<String>,
) -> Result<()> {
    let target = rand::random_range(20..=60);
    let slow = sinks[1];
    let (log, held) = crash_mid_burst(d, API_ORG, url, target, Some(slow)).await?;
    let disturbing = Disturbing::begin(sinks);
    done.kills += 1;
    done.held_open_at_kills += held;
    done.api_acked += log.iter().filter(|(_, a)| *a != Acked::Unknown).count();
    // Later entries win: a webhook created, then deleted, must be gone.
    let state: HashMap<Uuid, Acked> = log.into_iter().collect();
    let store = d.open_store()?;
    let (checked, wrong) = check_store(&store, API_ORG, &state)?;
    drop(store);
    done.api_checked += checked;
    done.api_wrong += wrong.len();
    failures.extend(
        wrong
            .into_iter()
            .map(|w| format!("kill {}: {w}", done.kills)),
    );
    d.start().await?;
    disturbing.end();
    for (id, acked) in state {
        if acked == Acked::Deleted {
            continue;
        }
        let path = format!("/v1/orgs/{API_ORG}/webhooks/{id}");
        let (status, body) = d.api(Method::DELETE, &path, None).await?;
        // 404: an `Unknown` delete that did happen.
        if !(200..300).contains(&status) && status != 404 {
            failures.push(format!(
                "DELETE {path} after kill {}: {status} {body}",
                done.kills
            ));
        }
    }
    Ok(())
}
