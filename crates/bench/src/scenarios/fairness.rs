//! Fair sharing of the attempt slots, measured: two organizations with ten slow webhooks
//! each, one publishing 20× the other's rate, more than the slots can carry; the quiet
//! one's latency, against the loud one's.

use super::runs::{deadline_for, result};
use super::*;

const LOUD_ORG: &str = "bench-fair-loud";
const QUIET_ORG: &str = "bench-fair-quiet";
/// Webhooks per organization (every event is attempted at each, inline).
const WEBHOOKS: usize = 10;
/// The loud organization's rate over the quiet one's.
const LOUD_OVER_QUIET: f64 = 20.0;
/// The loud organization's attempts over what the slots carry (`concurrency` per
/// `--fairness-answer-ms`): more, so that its attempts queue for slots.
const OVERLOAD: f64 = 1.1;

impl Bench {
    /// Both organizations publish at once for `--fairness-secs`; each delivery's latency
    /// is counted when its request arrives (the receiver then holds it
    /// `--fairness-answer-ms`). The bound stated for the quiet organization's p99 is one
    /// such answer: its attempts wait for the next slot to free up, never for the loud
    /// organization's backlog.
    pub(super) async fn fairness(&mut self) -> Result<ScenarioResult> {
        let slow_answer = Duration::from_millis(self.cli.fairness_answer_ms.max(1));
        let quiet_p99_bound = slow_answer;
        // The default per-webhook cap (8): the loud organization's ten webhooks could
        // hold 80 attempts, more than the 64 slots, so both organizations wait for slots.
        let settings = ServeSettings {
            per_endpoint_concurrency: hookwire_core::Config::defaults()
                .delivery
                .per_endpoint_concurrency,
            ..self.settings.clone()
        };
        let mut subs = Vec::new();
        for k in 0..WEBHOOKS {
            subs.push(subscription(LOUD_ORG, &self.receiver.url(k))?);
            subs.push(subscription(QUIET_ORG, &self.receiver.url(k))?);
        }
        let namespace = self.fair_namespace.clone();
        let serve = self.start_serve(&namespace, &settings, &subs).await?;

        let capacity = settings.concurrency as f64 / slow_answer.as_secs_f64();
        let loud_rate = OVERLOAD * capacity / WEBHOOKS as f64;
        let quiet_rate = loud_rate / LOUD_OVER_QUIET;
        let secs = self.cli.fairness_secs as f64;
        let loud_n = (loud_rate * secs).round() as usize;
        let quiet_n = ((quiet_rate * secs).round() as usize).max(1);
        eprintln!(
            "fairness: {loud_n} events at {loud_rate:.1}/s ({LOUD_ORG}) and {quiet_n} at {quiet_rate:.2}/s ({QUIET_ORG}), × {WEBHOOKS} webhooks answering in {} ms",
            slow_answer.as_millis()
        );
        let tally = Arc::new(
            Tally::new(loud_n + quiet_n, WEBHOOKS, Mode::Ok, Instant::now())
                .answering_after(slow_answer),
        );
        self.receiver.count_into(tally.clone());
        let loud = Source::connect(&self.cli.amqp_url, &namespace).await?;
        let quiet = Source::connect(&self.cli.amqp_url, &namespace).await?;
        let watched = self.watched(Some(serve));
        let before = watched.snapshot();
        let window = self.cli.confirm_window;
        let (loud_secs, quiet_secs) = tokio::try_join!(
            loud.publish_range(LOUD_ORG, &tally, 0..loud_n, window, Some(loud_rate)),
            quiet.publish_range(
                QUIET_ORG,
                &tally,
                loud_n..loud_n + quiet_n,
                window,
                Some(quiet_rate)
            ),
        )?;
        let deadline = Instant::now() + deadline_for(tally.expected(), None);
        let mut last_progress = Instant::now();
        while tally.delivered() < tally.expected() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if last_progress.elapsed() > Duration::from_secs(1) {
                self.serves[serve].check_alive()?;
                last_progress = Instant::now();
            }
        }
        let cpu = watched.since(&before);
        loud.close().await;
        quiet.close().await;

        let mut r = result("fairness", &tally, cpu, "deliveries/s");
        let loud_latency = tally.latencies_of(0..loud_n);
        let quiet_latency = tally.latencies_of(loud_n..loud_n + quiet_n);
        r.setup = format!(
            "a third serve, per_endpoint_concurrency {} (the default); {LOUD_ORG} publishes {loud_rate:.1} events/s ({OVERLOAD}× what {} slots carry at {} ms an answer) and {QUIET_ORG} {quiet_rate:.2}/s (20× less) for {secs} s, each to {WEBHOOKS} webhooks of its own answering in {} ms; latency from just before basic.publish to the request's arrival",
            settings.per_endpoint_concurrency,
            settings.concurrency,
            slow_answer.as_millis(),
            slow_answer.as_millis(),
        );
        r.publish_secs = Some(loud_secs.max(quiet_secs));
        r.latency = Some(quiet_latency);
        let loud_delivered = tally.delivered_of(0..loud_n);
        let quiet_delivered = tally.delivered_of(loud_n..loud_n + quiet_n);
        r.notes.push(format!(
            "quiet org: {quiet_delivered} deliveries, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (the latency column); bound stated: p99 under {} ms, {}",
            quiet_latency.p50_ms,
            quiet_latency.p99_ms,
            quiet_latency.max_ms,
            quiet_p99_bound.as_millis(),
            if quiet_latency.p99_ms < quiet_p99_bound.as_secs_f64() * 1e3 {
                "held"
            } else {
                "NOT held"
            }
        ));
        r.notes.push(format!(
            "loud org: {loud_delivered} deliveries, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            loud_latency.p50_ms, loud_latency.p99_ms, loud_latency.max_ms
        ));
        Ok(r)
    }
}
