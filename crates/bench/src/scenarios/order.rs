//! The order the selected scenarios run in, and the serves they share.

use super::*;

impl Bench {
    /// Runs the selected scenarios in order.
    pub async fn run(&mut self, selected: &[Scenario]) -> Result<Vec<ScenarioResult>> {
        let mut results = Vec::new();
        let has = |s: Scenario| selected.contains(&s);
        eprintln!(
            "hookwire-bench: namespace {}, receiver on {}",
            self.namespace,
            self.receiver.url(0)
        );
        if has(Scenario::Baseline) || has(Scenario::Latency) {
            let channel = self.broker.create_channel().await?;
            Self::delivery_topology(&self.baseline_namespace)
                .declare(&channel)
                .await?;
            let _ = channel.close(200, "declared".into()).await;
        }
        let delivery = [
            Scenario::Fanout1,
            Scenario::Fanout1Filter,
            Scenario::Fanout10,
            Scenario::FanoutCurve,
            Scenario::Latency,
            Scenario::Retries,
        ];
        // Started before the first baseline, so that every baseline runs beside the same
        // idle serve, whichever round it belongs to.
        let serve = if delivery.iter().any(|s| has(*s)) {
            let mut filtered = subscription(FANOUT1_FILTER_ORG, &self.receiver.url(0))?;
            filtered.filter = Some(hookwire_core::Filter::parse(FANOUT1_FILTER)?);
            let mut subs = vec![
                subscription(FANOUT1_ORG, &self.receiver.url(0))?,
                filtered,
                subscription(LATENCY_ORG, &self.receiver.url(0))?,
                subscription(RETRIES_ORG, &self.receiver.url(0))?,
            ];
            for k in 0..10 {
                subs.push(subscription(FANOUT10_ORG, &self.receiver.url(k))?);
            }
            if has(Scenario::FanoutCurve) {
                for (fanout, org) in FANOUT_CURVE {
                    for k in 0..fanout {
                        subs.push(subscription(org, &self.receiver.url(k))?);
                    }
                }
            }
            Some(
                self.start_serve(&self.namespace.clone(), &self.settings.clone(), &subs)
                    .await?,
            )
        } else {
            None
        };
        // A second serve, the same but exporting spans to the receiver's OTLP sink, so that
        // fanout1 and fanout1-traced run side by side in each round.
        let traced = if has(Scenario::Fanout1Traced) {
            let settings = ServeSettings {
                otlp_endpoint: Some(self.receiver.otlp_endpoint()),
                ..self.settings.clone()
            };
            let subs = [subscription(FANOUT1_TRACED_ORG, &self.receiver.url(0))?];
            Some(
                self.start_serve(&self.traced_namespace.clone(), &settings, &subs)
                    .await?,
            )
        } else {
            None
        };
        // The same as the delivery serve, with the store replicated through the streams,
        // so that fanout1 and fanout1-replicated run side by side in each round.
        let replicated = if has(Scenario::Fanout1Replicated) {
            let settings = ServeSettings {
                replication: true,
                ..self.settings.clone()
            };
            let subs = [subscription(FANOUT1_REPLICATED_ORG, &self.receiver.url(0))?];
            Some(
                self.start_serve(&self.repl_namespace.clone(), &settings, &subs)
                    .await?,
            )
        } else {
            None
        };
        if self.cli.cluster && (has(Scenario::Baseline) || has(Scenario::Fanout1)) {
            self.start_cluster(has(Scenario::Fanout1)).await?;
        }
        let events = self.cli.events;
        let window = self.cli.confirm_window;
        // The broker's own speed wanders between runs a minute apart on a VM, so each
        // hookwire figure of the bar is compared with the broker alone just before it.
        let rounds = self.cli.rounds.max(1);
        for round in 1..=rounds {
            let label = |name: &str| {
                if rounds == 1 {
                    name.to_owned()
                } else {
                    format!("{name} #{round}")
                }
            };
            if has(Scenario::Baseline) {
                // As many messages as the fanout1 it is compared with.
                let r = self
                    .baseline(&label("baseline"), events, None, false)
                    .await?;
                self.baseline_per_sec = Some(r.per_sec);
                results.push(r);
            }
            if let (Some(serve), true) = (serve, has(Scenario::Fanout1)) {
                let step = Step {
                    scenario: Scenario::Fanout1,
                    name: label("fanout1"),
                    org: FANOUT1_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: format!(
                        "{events} events as fast as the confirm window ({window}) allows; 1 webhook"
                    ),
                };
                results.push(self.deliver(serve, step).await?);
            }
            if let Some(replicated) = replicated {
                let step = Step {
                    scenario: Scenario::Fanout1Replicated,
                    name: label("fanout1-replicated"),
                    org: FANOUT1_REPLICATED_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: "as fanout1, right after it, on a second serve with the same settings and replication.enabled (the store's changes through <ns>.changes, kept event bodies through <ns>.payloads, attempt records through <ns>.attempts)".into(),
                };
                let mut r = self.deliver(replicated, step).await?;
                let plain = results
                    .iter()
                    .rev()
                    .find(|p| p.name == label("fanout1"))
                    .cloned();
                if let Some(plain) = plain {
                    r.vs_fanout1 = Some(r.per_sec / plain.per_sec.max(1e-9));
                    let diff = |a: Option<f64>, b: Option<f64>| {
                        a.zip(b)
                            .map_or_else(|| "-".to_owned(), |(a, b)| format!("{:+.0}", a - b))
                    };
                    r.notes.push(format!(
                        "{:.2} × fanout1 of this round; serve CPU µs per delivery {} against fanout1's, RabbitMQ's {}",
                        r.per_sec / plain.per_sec.max(1e-9),
                        diff(r.serve_us_per_message(), plain.serve_us_per_message()),
                        diff(r.rabbitmq_us_per_message(), plain.rabbitmq_us_per_message()),
                    ));
                }
                results.push(r);
            }
            if self.cluster.is_some() {
                if has(Scenario::Baseline) {
                    let r = self
                        .baseline(&label("baseline-cluster"), events, None, true)
                        .await?;
                    self.cluster_baseline_per_sec = Some(r.per_sec);
                    results.push(r);
                }
                if let Some(serve) = self.cluster_serve {
                    let step = Step {
                        scenario: Scenario::Fanout1,
                        name: label("fanout1-cluster"),
                        org: FANOUT1_CLUSTER_ORG,
                        fanout: 1,
                        mode: Mode::Ok,
                        events,
                        rate: None,
                        setup: format!(
                            "as fanout1, on the three-node cluster: serve with amqp.urls of all three (its quorum queues with a member on each node, RabbitMQ's default on a cluster); {events} events published to node 1"
                        ),
                    };
                    let mut r = self.deliver(serve, step).await?;
                    r.vs_baseline = self.cluster_baseline_per_sec.map(|b| r.per_sec / b);
                    results.push(r);
                }
            }
            if let (Some(serve), true) = (serve, has(Scenario::Fanout1Filter)) {
                let step = Step {
                    scenario: Scenario::Fanout1Filter,
                    name: label("fanout1-filter"),
                    org: FANOUT1_FILTER_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: format!(
                        "as fanout1, right after it, with the webhook's filter `{FANOUT1_FILTER}` (every event passes)"
                    ),
                };
                results.push(self.deliver(serve, step).await?);
            }
            if let Some(traced) = traced {
                let exports = self.receiver.otlp_requests();
                let step = Step {
                    scenario: Scenario::Fanout1Traced,
                    name: label("fanout1-traced"),
                    org: FANOUT1_TRACED_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: "as fanout1, right after it, on a second serve with the same settings and tracing.otlp_endpoint set (an event span and an attempt span per event, exported to a loopback sink)".into(),
                };
                let mut r = self.deliver(traced, step).await?;
                // The last batch leaves within half a second of its last span.
                tokio::time::sleep(Duration::from_millis(700)).await;
                let exports = self.receiver.otlp_requests() - exports;
                r.notes
                    .push(format!("{exports} OTLP export requests received"));
                r.complete &= exports > 0;
                results.push(r);
            }
            if let (Some(serve), true) = (serve, has(Scenario::Latency)) {
                let n = self.latency_events();
                let r = self
                    .baseline(&label("baseline-latency"), n, Some(self.cli.rate), false)
                    .await?;
                self.baseline_p99_ms = r.latency.map(|l| l.p99_ms);
                results.push(r);
                let step = Step {
                    scenario: Scenario::Latency,
                    name: label("latency"),
                    org: LATENCY_ORG,
                    fanout: 1,
                    mode: Mode::Ok,
                    events: n,
                    rate: Some(self.cli.rate),
                    setup: format!(
                        "{} events/s for {} s, 1 webhook; from just before basic.publish to receipt by the receiver",
                        self.cli.rate, self.cli.latency_secs
                    ),
                };
                results.push(self.deliver(serve, step).await?);
            }
        }
        if let Some(serve) = serve {
            let curve = FANOUT_CURVE.into_iter().map(|(fanout, org)| {
                // About as many deliveries at each point as fanout1 makes.
                let n = (events / fanout).max(2);
                Step {
                    scenario: Scenario::FanoutCurve,
                    name: format!("fanout-curve-{fanout}"),
                    org,
                    fanout,
                    mode: Mode::Ok,
                    events: n,
                    rate: None,
                    setup: format!(
                        "{n} events, {fanout} webhooks of one org each ({})",
                        if fanout > 16 {
                            "in chunk messages of at most 16: inline_fanout_max"
                        } else {
                            "attempted inline"
                        }
                    ),
                }
            });
            let steps = [
                Step {
                    scenario: Scenario::Fanout10,
                    name: "fanout10".into(),
                    org: FANOUT10_ORG,
                    fanout: 10,
                    mode: Mode::Ok,
                    events,
                    rate: None,
                    setup: format!(
                        "{events} events, 10 webhooks of one org each (attempted inline: inline_fanout_max 16)"
                    ),
                },
                Step {
                    scenario: Scenario::Retries,
                    name: "retries".into(),
                    org: RETRIES_ORG,
                    fanout: 1,
                    mode: Mode::FailFirst {
                        percent: FAIL_PERCENT,
                    },
                    events,
                    rate: None,
                    setup: format!(
                        "{events} events, 1 webhook answering 500 to the first attempt of {FAIL_PERCENT} % of them; retried from tier 1s"
                    ),
                },
            ];
            for step in steps.into_iter().chain(curve) {
                if !has(step.scenario) {
                    continue;
                }
                let (scenario, n) = (step.scenario, step.events);
                let mut r = self.deliver(serve, step).await?;
                if scenario == Scenario::Retries {
                    let failing = (0..n)
                        .filter(|&s| Tally::fails_first(s, FAIL_PERCENT))
                        .count() as u64;
                    r.notes.push(format!(
                        "{} first attempts answered 500 (expected {failing}); {} of {} events delivered",
                        r.failed_answers, r.delivered, r.expected
                    ));
                    r.complete &= r.failed_answers == failing;
                }
                results.push(r);
            }
        }
        if has(Scenario::Fairness) {
            results.push(self.fairness().await?);
        }
        if has(Scenario::Drain) {
            results.extend(self.drain().await?);
        }
        if has(Scenario::SlowReceivers) {
            results.extend(self.slow_receivers().await?);
        }
        if has(Scenario::OverloadedReceiver) {
            results.push(self.overloaded_receiver().await?);
        }
        if has(Scenario::Memory) {
            results.extend(self.memory().await?);
        }
        if has(Scenario::MemoryReplicated) {
            results.push(self.memory_replicated().await?);
        }
        if has(Scenario::Propagation) {
            results.push(self.propagation().await?);
        }
        if has(Scenario::Rebuild) {
            results.push(self.rebuild().await?);
        }
        if has(Scenario::AttemptLog) {
            results.push(self.attempt_log().await?);
        }
        if has(Scenario::Store) {
            results.push(self.store().await?);
        }
        if has(Scenario::StoreSize) {
            results.extend(self.store_size().await?);
        }
        for serve in &self.serves {
            for line in serve.unexpected_log_lines().iter().take(5) {
                eprintln!("serve log: {line}");
            }
        }
        Ok(results)
    }
}
