//! One measured run: the broker alone (baseline), or `serve` delivering a step's events.

use super::*;

impl Bench {
    pub(super) async fn baseline(
        &self,
        name: &str,
        n: usize,
        rate: Option<f64>,
        on_cluster: bool,
    ) -> Result<ScenarioResult> {
        eprintln!("{name}: {n} messages");
        let tally = Arc::new(Tally::new(n, 1, Mode::Ok, Instant::now()));
        let (url, namespace, watched) = match &self.cluster {
            Some(cluster) if on_cluster => (
                cluster.urls[0].clone(),
                &self.cluster_baseline_namespace,
                Watched {
                    rabbitmq: cluster.pids,
                    ..self.watched(None)
                },
            ),
            _ => (
                self.cli.amqp_url.clone(),
                &self.baseline_namespace,
                self.watched(None),
            ),
        };
        let consumer = hookwire_amqp::connect(&url, &format!("{namespace}-consumer")).await?;
        let source = Source::connect(&url, namespace).await?;
        let before = watched.snapshot();
        let deadline = Instant::now() + deadline_for(n as u64, rate);
        let queue = Names::new(namespace).events_queue();
        let consume = tokio::spawn(consume_until_owned(
            consumer,
            queue,
            self.cli.prefetch,
            tally.clone(),
            deadline,
        ));
        let publish_secs = source
            .publish_all("bench-baseline", &tally, self.cli.confirm_window, rate)
            .await?;
        consume.await??;
        let cpu = watched.since(&before);
        source.close().await;
        let mut r = result(name, &tally, cpu, "msg/s");
        r.setup = format!(
            "RabbitMQ alone{}: hookwire's events exchange and quorum queue (its arguments), {}; \
             confirm window {}, prefetch {}, one ack per message; publisher and consumer on two \
             connections, at the same time; hookwire's message (Producer::encode, {} B body)",
            if on_cluster {
                " (the three-node cluster, publisher and consumer on node 1, 3 replicas)"
            } else {
                ""
            },
            match rate {
                Some(rate) => format!("{rate} msg/s for {} s", self.cli.latency_secs),
                None => format!("{n} messages"),
            },
            self.cli.confirm_window,
            self.cli.prefetch,
            body_len(),
        );
        r.publish_secs = Some(publish_secs);
        r.notes.push(format!(
            "publishing alone finished in {publish_secs:.2} s ({:.0} msg/s confirmed)",
            n as f64 / publish_secs.max(1e-9)
        ));
        Ok(r)
    }

    pub(super) async fn deliver(&mut self, serve: usize, step: Step) -> Result<ScenarioResult> {
        let Step {
            scenario,
            name,
            org,
            fanout,
            mode,
            events: n,
            rate,
            setup,
        } = step;
        eprintln!("{name}: {n} events × {fanout} subscriber(s)");
        let tally = Arc::new(Tally::new(n, fanout, mode, Instant::now()));
        self.receiver.count_into(tally.clone());
        let source = Source::connect(
            &self.serves[serve].amqp_url(),
            self.serves[serve].namespace(),
        )
        .await?;
        let watched = self.watched(Some(serve));
        let before = watched.snapshot();
        let rss = RssSampler::start(self.serves[serve].pid());
        let publish_secs = source
            .publish_all(org, &tally, self.cli.confirm_window, rate)
            .await?;
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
        let (rss_max, rss_end) = rss.stop();
        source.close().await;
        let mut r = result(&name, &tally, cpu, "deliveries/s");
        r.setup = setup;
        r.publish_secs = Some(publish_secs);
        r.vs_baseline = self
            .baseline_per_sec
            .filter(|_| {
                matches!(
                    scenario,
                    Scenario::Fanout1
                        | Scenario::Fanout1Replicated
                        | Scenario::Fanout1Filter
                        | Scenario::Fanout1Traced
                        | Scenario::Fanout10
                        | Scenario::FanoutCurve
                )
            })
            .map(|b| r.per_sec / b);
        r.p99_gap_ms = self
            .baseline_p99_ms
            .filter(|_| scenario == Scenario::Latency)
            .zip(r.latency)
            .map(|(b, l)| l.p99_ms - b);
        if let Some(gap) = r.p99_gap_ms {
            r.notes.push(format!(
                "p99 {gap:+.2} ms against the broker alone just before it"
            ));
        }
        r.serve_rss_max_mib = rss_max;
        r.serve_rss_end_mib = rss_end;
        Ok(r)
    }
}

async fn consume_until_owned(
    connection: Connection,
    queue: String,
    prefetch: u16,
    tally: Arc<Tally>,
    deadline: Instant,
) -> Result<()> {
    let result = consume_until(&connection, &queue, prefetch, tally, deadline).await;
    let _ = connection.close(200, "bye".into()).await;
    result
}

/// A generous bound: 60 s plus 2 ms per delivery.
pub(super) fn deadline_for(deliveries: u64, rate: Option<f64>) -> Duration {
    let publishing = rate.map_or(0.0, |r| deliveries as f64 / r);
    Duration::from_secs_f64(60.0 + publishing + deliveries as f64 * 0.002)
}

pub(super) fn body_len() -> usize {
    serde_json::to_vec(&serde_json::json!({
        "event": crate::amqp::EVENT_TYPE,
        "report_run_url": format!("https://app.mode.com/{FANOUT1_ORG}/reports/8f2c1e0a9b7d/runs/12345"),
    }))
    .map_or(0, |b| b.len())
}

pub(super) fn result(name: &str, tally: &Tally, cpu: CpuSplit, unit: &str) -> ScenarioResult {
    let secs = tally.span_secs();
    let delivered = tally.delivered();
    ScenarioResult {
        name: name.into(),
        setup: String::new(),
        events: tally.events(),
        expected: tally.expected(),
        delivered,
        duplicates: tally.duplicates(),
        failed_answers: tally.failed_answers(),
        strays: tally.strays(),
        secs,
        per_sec: delivered as f64 / secs.max(1e-9),
        unit: unit.into(),
        vs_baseline: None,
        vs_fanout1: None,
        p99_gap_ms: None,
        publish_secs: None,
        latency: Some(tally.latencies()),
        cpu: Some(cpu),
        serve_rss_max_mib: None,
        serve_rss_end_mib: None,
        store: None,
        complete: delivered == tally.expected() && tally.strays() == 0,
        notes: if tally.duplicates() > 0 {
            vec![format!("{} duplicate deliveries", tally.duplicates())]
        } else {
            Vec::new()
        },
    }
}
