//! The ledger: every (event, subscription) pair that must be delivered, checked against
//! what the receivers answered 2xx and what was dead-lettered; and the report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use hookwire_core::event::webhook_id;
use uuid::Uuid;

use crate::receiver_log::{Class, History, ReceiverLog, classify};
use crate::sink::Sink;

/// One dead letter, from the API or the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead {
    /// `x-hookwire-reason`.
    pub reason: String,
    /// The event id, when known.
    pub event_id: Option<String>,
    /// The webhook, for a failed delivery.
    pub subscription: Option<Uuid>,
}

impl From<hookwire_store::DeadLetter> for Dead {
    fn from(d: hookwire_store::DeadLetter) -> Self {
        Self {
            reason: d.reason,
            event_id: d.event_id,
            subscription: d.subscription_id,
        }
    }
}

/// The pairs that must be delivered, by webhook-id.
#[derive(Debug, Default)]
pub struct Ledger {
    expected: HashMap<String, (String, Uuid)>,
}

impl Ledger {
    /// Expects `event_id` at every one of `subs`.
    pub fn expect(&mut self, event_id: &str, subs: &[&Sink]) {
        for s in subs {
            self.expect_at(event_id, s.sub.id);
        }
    }

    /// Expects `event_id` at webhook `sub`.
    pub fn expect_at(&mut self, event_id: &str, sub: Uuid) {
        self.expected
            .insert(webhook_id(event_id, &sub), (event_id.to_owned(), sub));
    }

    /// `events` new event ids (`<prefix>-<run>-<n>`, unique to this run), each expected at
    /// every one of `subs`.
    pub fn expect_events(&mut self, prefix: &str, events: usize, subs: &[&Sink]) -> Vec<String> {
        let run = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
        let ids: Vec<String> = (0..events).map(|i| format!("{prefix}-{run}-{i}")).collect();
        for id in &ids {
            self.expect(id, subs);
        }
        ids
    }

    /// For a failed run: the lost pairs per subscriber, as "never requested" and
    /// "requested, never answered 2xx".
    pub fn lost_detail(&self, sinks: &[&Sink], dead: &[Dead]) -> String {
        let logs: Vec<_> = sinks.iter().map(|s| s.log()).collect();
        let named: Vec<(Uuid, &str, &ReceiverLog)> = sinks
            .iter()
            .zip(&logs)
            .map(|(s, l)| (s.sub.id, s.sub.description.as_str(), &**l))
            .collect();
        self.lost_detail_of(&named, dead)
    }

    /// [`Ledger::lost_detail`] over receiver logs: (webhook, its name, its log).
    pub fn lost_detail_of(&self, logs: &[(Uuid, &str, &ReceiverLog)], dead: &[Dead]) -> String {
        let dead_pairs = dead_pairs(dead);
        let mut out = Vec::new();
        for (sub_id, name, log) in logs {
            let (mut never, mut failed) = (0, 0);
            for (id, (_, sub)) in &self.expected {
                if sub != sub_id || log.delivered(id) || dead_pairs.contains(id) {
                    continue;
                }
                if log.pairs.contains_key(id) {
                    failed += 1
                } else {
                    never += 1
                }
            }
            if never + failed > 0 {
                out.push(format!(
                    "{name}: {never} never requested, {failed} requested but never 2xx"
                ));
            }
        }
        out.join("; ")
    }

    /// Counts what arrived and what died. `allowed` says which dead letters the scenario
    /// expects; `delivery_limit` is never allowed.
    pub fn tally(&self, sinks: &[&Sink], dead: &[Dead], allowed: impl Fn(&Dead) -> bool) -> Tally {
        let bad_signatures = sinks.iter().map(|s| s.bad_signatures()).sum();
        // Each receiver's log is read in place: a soak's are too big to copy.
        let logs: Vec<_> = sinks.iter().map(|s| s.log()).collect();
        let by_sub: Vec<(Uuid, &ReceiverLog)> = sinks
            .iter()
            .zip(&logs)
            .map(|(s, l)| (s.sub.id, &**l))
            .collect();
        Tally {
            bad_signatures,
            ..self.tally_logs(&by_sub, dead, allowed, crate::publish::first_sent)
        }
    }

    /// [`Ledger::tally`] over receiver logs, by the webhook each receiver is; `sent` says
    /// when an event was first sent.
    pub fn tally_logs(
        &self,
        logs: &[(Uuid, &ReceiverLog)],
        dead: &[Dead],
        allowed: impl Fn(&Dead) -> bool,
        sent: impl Fn(&str) -> Option<std::time::Instant>,
    ) -> Tally {
        let delivered: HashMap<Uuid, &ReceiverLog> = logs.iter().copied().collect();
        let mut t = Tally {
            expected: self.expected.len(),
            ..Tally::default()
        };
        for d in dead {
            *t.dead_by_reason.entry(d.reason.clone()).or_insert(0) += 1;
            if d.reason == "delivery_limit" || !allowed(d) {
                t.unexpected_dead += 1;
            }
        }
        let dead_pairs = dead_pairs(dead);
        for (id, (event, sub)) in &self.expected {
            let log = delivered.get(sub);
            let history = log.and_then(|l| Some((l, l.pairs.get(id)?)));
            match history.filter(|(_, h)| h.delivered() > 0) {
                Some((log, history)) => {
                    t.delivered += 1;
                    if history.delivered() > 1 {
                        t.classify(event, sub, history, sent(event), log);
                    }
                }
                None if dead_pairs.contains(id) => t.dead_expected += 1,
                None => {
                    t.lost += 1;
                    if t.lost_examples.len() < EXAMPLES {
                        t.lost_examples.push(id.clone());
                    }
                }
            }
        }
        for (sub, log) in logs {
            t.disturbances += log.disturbances.len();
            t.open_at_disturbances += log.disturbances.iter().map(|d| d.open).sum::<usize>();
            t.strays += log
                .pairs
                .iter()
                .filter(|(id, _)| self.expected.get(*id).is_none_or(|(_, s)| s != sub))
                .map(|(_, h)| h.delivered())
                .sum::<usize>();
        }
        t
    }
}

/// A pair's requests and the disturbances, in ms from when its event was sent (or its
/// first request), for the report of a duplicate nothing explains.
fn describe(
    event: &str,
    sub: &Uuid,
    requests: &[crate::receiver_log::Request],
    sent: Option<std::time::Instant>,
    disturbances: &[crate::receiver_log::Disturbance],
) -> String {
    let t0 = sent.unwrap_or(requests[0].start).min(requests[0].start);
    let ms = |i: std::time::Instant| {
        let (later, d) = match i.checked_duration_since(t0) {
            Some(d) => ("", d),
            None => ("-", t0 - i),
        };
        format!("{later}{}", d.as_millis())
    };
    let asked: Vec<String> = requests
        .iter()
        .map(|r| match r.answered {
            Some((at, status)) => format!("{}-{}:{status}", ms(r.start), ms(at)),
            None => format!("{}-:open", ms(r.start)),
        })
        .collect();
    let near: Vec<String> = disturbances
        .iter()
        .filter(|d| d.to >= t0)
        .take(3)
        .map(|d| format!("{}-{}", ms(d.from), ms(d.to)))
        .collect();
    format!(
        "{event} at {sub}: sent {}, requests {}, disturbances {}",
        sent.map_or("?".into(), ms),
        asked.join(" "),
        if near.is_empty() {
            "none".into()
        } else {
            near.join(" ")
        }
    )
}

/// How many lost pairs and unexplained duplicates a tally names.
const EXAMPLES: usize = 5;
/// Duplicates answered before a disturbance, per expected pair: hookwire had the answer,
/// and a redelivery finds it (docs/delivery-semantics.md) unless it came in the last
/// moments before a kill.
const ANSWERED_BEFORE_MAX_PERCENT: f64 = 0.1;

/// The webhook-ids of the dead letters that name an event and a webhook.
fn dead_pairs(dead: &[Dead]) -> HashSet<String> {
    dead.iter()
        .filter_map(|d| Some(webhook_id(d.event_id.as_ref()?, d.subscription.as_ref()?)))
        .collect()
}

/// What one scenario saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Pairs that must arrive.
    pub expected: usize,
    /// Pairs answered 2xx at least once.
    pub delivered: usize,
    /// Pairs neither delivered nor dead-lettered.
    pub lost: usize,
    /// The first few lost pairs' webhook-ids.
    pub lost_examples: Vec<String>,
    /// Extra 2xx answers for pairs already delivered.
    pub duplicates: usize,
    /// Duplicates whose previous answered request was open during a disturbance.
    pub dup_in_flight: usize,
    /// Duplicates whose previous request was answered before a disturbance: only the ack
    /// was missing.
    pub dup_answered_before: usize,
    /// The first few of those, described: how long before the disturbance the answer
    /// came says which record the redelivery missed.
    pub answered_before_examples: Vec<String>,
    /// Duplicates of pairs never requested before a disturbance, whose event was sent
    /// before it: the event was fanned out again.
    pub dup_fanned_out_again: usize,
    /// Duplicates no disturbance explains.
    pub dup_other: usize,
    /// The first few of those, described.
    pub other_examples: Vec<String>,
    /// Disturbances the receivers were told of (each receiver counts its own).
    pub disturbances: usize,
    /// Requests open at the receivers during the disturbances: the most in-flight
    /// duplicates there can be.
    pub open_at_disturbances: usize,
    /// 2xx answers to webhook-ids the scenario never expected (another scenario's, or an
    /// event it never published).
    pub strays: usize,
    /// Expected pairs that are (still) dead-lettered instead of delivered.
    pub dead_expected: usize,
    /// Dead letters by reason.
    pub dead_by_reason: BTreeMap<String, usize>,
    /// Dead letters the scenario did not expect (every `delivery_limit` among them).
    pub unexpected_dead: usize,
    /// Requests whose signature did not verify.
    pub bad_signatures: usize,
}

impl Tally {
    /// Every expected pair is delivered or dead-lettered.
    pub fn settled(&self) -> bool {
        self.lost == 0
    }

    /// Duplicates per delivered pair, in percent.
    pub fn duplicate_rate(&self) -> f64 {
        if self.delivered == 0 {
            0.0
        } else {
            100.0 * self.duplicates as f64 / self.delivered as f64
        }
    }

    /// Duplicates answered before a disturbance, per expected pair, in percent.
    pub fn answered_before_rate(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            100.0 * self.dup_answered_before as f64 / self.expected as f64
        }
    }

    /// Counts and classifies the duplicates of one pair (`event` at `sub`).
    fn classify(
        &mut self,
        event: &str,
        sub: &Uuid,
        history: &History,
        sent: Option<std::time::Instant>,
        log: &ReceiverLog,
    ) {
        let requests: Vec<_> = history.requests().copied().collect();
        for class in classify(&requests, sent, &log.disturbances) {
            self.duplicates += 1;
            match class {
                Class::InFlight => self.dup_in_flight += 1,
                Class::AnsweredBefore => {
                    self.dup_answered_before += 1;
                    if self.answered_before_examples.len() < EXAMPLES {
                        self.answered_before_examples.push(describe(
                            event,
                            sub,
                            &requests,
                            sent,
                            &log.disturbances,
                        ));
                    }
                }
                Class::FannedOutAgain => self.dup_fanned_out_again += 1,
                Class::Other => {
                    self.dup_other += 1;
                    if self.other_examples.len() < EXAMPLES {
                        self.other_examples.push(describe(
                            event,
                            sub,
                            &requests,
                            sent,
                            &log.disturbances,
                        ));
                    }
                }
            }
        }
    }

    /// The verdict's reasons to fail.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.lost > 0 {
            out.push(format!("{} lost", self.lost));
        }
        if self.unexpected_dead > 0 {
            out.push(format!(
                "{} unexpected dead letter(s)",
                self.unexpected_dead
            ));
        }
        if let Some(n) = self.dead_by_reason.get("delivery_limit") {
            out.push(format!("{n} delivery_limit dead letter(s) (a crash loop)"));
        }
        if self.bad_signatures > 0 {
            out.push(format!("{} bad signature(s)", self.bad_signatures));
        }
        if self.dup_other > 0 {
            out.push(format!(
                "{} duplicate(s) no disturbance explains ({})",
                self.dup_other,
                self.other_examples.join("; ")
            ));
        }
        if self.answered_before_rate() > ANSWERED_BEFORE_MAX_PERCENT {
            out.push(format!(
                "{} duplicates answered before a disturbance ({:.2}% of expected pairs, more than {ANSWERED_BEFORE_MAX_PERCENT}%)",
                self.dup_answered_before,
                self.answered_before_rate()
            ));
        }
        if self.dup_in_flight > self.open_at_disturbances {
            out.push(format!(
                "{} duplicates in flight at a disturbance, more than the {} requests open then",
                self.dup_in_flight, self.open_at_disturbances
            ));
        }
        if self.strays > 0 {
            out.push(format!(
                "{} 2xx answer(s) to webhook-ids never expected",
                self.strays
            ));
        }
        out
    }
}

/// One scenario's result.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario.
    pub name: String,
    /// The ledger's counts.
    pub tally: Tally,
    /// Scenario-specific figures (kills, restarts, …).
    pub notes: Vec<(String, String)>,
    /// Scenario-specific failures, besides the tally's.
    pub failures: Vec<String>,
    /// Wall time.
    pub wall: Duration,
    /// The ledger's self-test: the webhook-id of the pair the runner expected but never
    /// published. The ledger must then fail with exactly that pair lost, and the outcome
    /// passes only if it does.
    pub must_lose: Option<String>,
}

impl Outcome {
    /// Every reason to fail.
    pub fn all_failures(&self) -> Vec<String> {
        let mut out = self.tally.failures();
        out.extend(self.failures.iter().cloned());
        match &self.must_lose {
            None => out,
            Some(id) if out == ["1 lost"] && self.tally.lost_examples == [id.clone()] => Vec::new(),
            Some(id) => vec![format!(
                "the ledger's self-test: it must fail with `1 lost` ({id}), it said {out:?} (lost {:?})",
                self.tally.lost_examples
            )],
        }
    }
}

/// The table for every scenario, then the verdict line.
pub fn report(outcomes: &[Outcome]) -> (String, bool) {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:>8} {:>9} {:>5} {:>10} {:>7}  {:<40} {:>8}",
        "scenario", "expected", "delivered", "lost", "duplicates", "dup%", "dead-lettered", "wall"
    );
    for o in outcomes {
        let t = &o.tally;
        let dead = if t.dead_by_reason.is_empty() {
            "-".to_owned()
        } else {
            t.dead_by_reason
                .iter()
                .map(|(r, n)| format!("{r}:{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            s,
            "{:<16} {:>8} {:>9} {:>5} {:>10} {:>6.2}%  {:<40} {:>7.1}s",
            o.name,
            t.expected,
            t.delivered,
            t.lost,
            t.duplicates,
            t.duplicate_rate(),
            dead,
            o.wall.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "{:<16} duplicates: in_flight={} (open at disturbances: {}, over {} receiver-disturbances) answered_before={} ({:.2}% of expected pairs, at most {ANSWERED_BEFORE_MAX_PERCENT}%) fanned_out_again={} other={}",
            "",
            t.dup_in_flight,
            t.open_at_disturbances,
            t.disturbances,
            t.dup_answered_before,
            t.answered_before_rate(),
            t.dup_fanned_out_again,
            t.dup_other,
        );
        if !t.other_examples.is_empty() {
            let _ = writeln!(s, "{:<16} other: {}", "", t.other_examples.join("; "));
        }
        if !t.answered_before_examples.is_empty() {
            let _ = writeln!(
                s,
                "{:<16} answered before: {}",
                "",
                t.answered_before_examples.join("; ")
            );
        }
        if let Some(id) = &o.must_lose {
            let verdict = if o.all_failures().is_empty() {
                "failed as it must"
            } else {
                "did NOT fail as it must"
            };
            let _ = writeln!(
                s,
                "{:<16} self-test: {id} expected, never published; the ledger {verdict}",
                ""
            );
        }
        if !o.notes.is_empty() {
            let notes: Vec<String> = o.notes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "{:<16} {}", "", notes.join(" "));
        }
    }
    let failures: Vec<String> = outcomes
        .iter()
        .flat_map(|o| {
            o.all_failures()
                .into_iter()
                .map(|f| format!("{}: {f}", o.name))
        })
        .collect();
    let pass = failures.is_empty();
    if pass {
        s.push_str("PASS\n");
    } else {
        let _ = writeln!(s, "FAIL: {}", failures.join("; "));
    }
    (s, pass)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn dead(reason: &str, event: &str, sub: Uuid) -> Dead {
        Dead {
            reason: reason.into(),
            event_id: Some(event.into()),
            subscription: Some(sub),
        }
    }

    /// A receiver's log written by hand: requests and disturbances, in ms from `t0`.
    struct Script {
        t0: Instant,
        log: ReceiverLog,
        n: usize,
    }

    impl Script {
        fn new() -> Self {
            Self {
                t0: Instant::now(),
                log: ReceiverLog::default(),
                n: 0,
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        /// A request for `event` at `sub` from `start` to `answered` ms, answered `status`.
        fn request(&mut self, event: &str, sub: Uuid, start: u64, answered: u64, status: u16) {
            let id = webhook_id(event, &sub);
            self.log.request(self.n, &id, self.at(start));
            self.log.answer(self.n, status, self.at(answered));
            self.n += 1;
        }

        /// A disturbance from `from` to `to` ms, with `open` requests open during it.
        fn disturbance(&mut self, from: u64, to: u64, open: usize) {
            self.log
                .disturbances
                .push(crate::receiver_log::Disturbance {
                    from: self.at(from),
                    to: self.at(to),
                    open,
                });
        }
    }

    /// The five cases of a receiver log the ledger must tell apart: a pair never
    /// requested, one delivered twice, one dead-lettered, one only ever answered 500, and
    /// a 2xx for an event of another scenario.
    #[test]
    fn the_ledger_reports_each_case_of_a_receiver_log() {
        let sub = Uuid::now_v7();
        let mut ledger = Ledger::default();
        for e in ["ok", "missing", "twice", "dead", "failed"] {
            ledger.expect_at(e, sub);
        }
        let mut s = Script::new();
        s.request("ok", sub, 0, 1, 200);
        // Open at a kill, delivered again after it.
        s.request("twice", sub, 2, 15, 200);
        s.disturbance(10, 20, 1);
        s.request("twice", sub, 30, 31, 200);
        s.request("dead", sub, 4, 5, 400);
        s.request("failed", sub, 6, 7, 500);
        s.request("failed", sub, 40, 41, 500);
        s.request("elsewhere", sub, 8, 9, 200);
        let dead = [dead("permanent", "dead", sub)];
        let t = ledger.tally_logs(
            &[(sub, &s.log)],
            &dead,
            |d| d.reason == "permanent",
            |_| None,
        );

        assert_eq!(t.expected, 5);
        assert_eq!(t.delivered, 2, "ok and twice");
        assert_eq!(t.duplicates, 1, "twice");
        assert_eq!(t.dead_expected, 1, "dead");
        assert_eq!(t.unexpected_dead, 0, "permanent was allowed");
        assert_eq!(t.lost, 2, "missing (never requested) and failed (500 only)");
        let mut lost = t.lost_examples.clone();
        lost.sort();
        let mut want = vec![webhook_id("missing", &sub), webhook_id("failed", &sub)];
        want.sort();
        assert_eq!(lost, want);
        assert_eq!(t.strays, 1, "elsewhere");
        assert_eq!(
            t.failures(),
            [
                "2 lost".to_owned(),
                "1 2xx answer(s) to webhook-ids never expected".to_owned()
            ]
        );
        assert!(!t.settled());
        let detail = ledger.lost_detail_of(&[(sub, "receiver", &s.log)], &dead);
        assert_eq!(
            detail,
            "receiver: 1 never requested, 1 requested but never 2xx"
        );

        // The same dead letter, not allowed: a failure of its own.
        let t = ledger.tally_logs(&[(sub, &s.log)], &dead, |_| false, |_| None);
        assert_eq!(t.unexpected_dead, 1);
        assert!(
            t.failures()
                .contains(&"1 unexpected dead letter(s)".to_owned())
        );
    }

    #[test]
    fn a_pair_delivered_once_per_expected_pair_passes() {
        let sub = Uuid::now_v7();
        let mut ledger = Ledger::default();
        ledger.expect_at("a", sub);
        ledger.expect_at("b", sub);
        let mut s = Script::new();
        s.request("a", sub, 0, 1, 500);
        s.request("a", sub, 2, 3, 200);
        s.request("b", sub, 4, 5, 200);
        let t = ledger.tally_logs(&[(sub, &s.log)], &[], |_| false, |_| None);
        assert_eq!((t.delivered, t.lost, t.duplicates), (2, 0, 0));
        assert!(t.failures().is_empty(), "{:?}", t.failures());
    }

    /// Each duplicate against the pair's earlier requests, when its event was sent and
    /// the disturbances: in flight, answered before one, fanned out again, or unexplained
    /// (a failure).
    #[test]
    fn duplicates_are_classified_by_the_disturbances() {
        let sub = Uuid::now_v7();
        let mut ledger = Ledger::default();
        for e in ["inflight", "before", "other", "thrice", "refanned"] {
            ledger.expect_at(e, sub);
        }
        let mut s = Script::new();
        // A kill at 100 ms, serve back at 150 ms; another at 300–350 ms.
        s.disturbance(100, 150, 2);
        s.disturbance(300, 350, 1);
        // Open at the kill: answered (to the dead process) at 120 ms.
        s.request("inflight", sub, 90, 120, 200);
        s.request("inflight", sub, 200, 201, 200);
        // Answered at 60 ms: only the ack was missing.
        s.request("before", sub, 50, 60, 200);
        s.request("before", sub, 160, 161, 200);
        // Twice between the kills: nothing explains it.
        s.request("other", sub, 170, 171, 200);
        s.request("other", sub, 180, 181, 200);
        // Three times: in flight at the first kill, answered before the second.
        s.request("thrice", sub, 95, 130, 200);
        s.request("thrice", sub, 160, 165, 200);
        s.request("thrice", sub, 400, 401, 200);
        // Sent before the first kill, delivered twice after it, never requested before.
        s.request("refanned", sub, 200, 201, 200);
        s.request("refanned", sub, 210, 211, 200);
        let sent_at = s.at(50);
        let sent = |e: &str| (e == "refanned").then_some(sent_at);
        let t = ledger.tally_logs(&[(sub, &s.log)], &[], |_| false, sent);
        assert_eq!(t.duplicates, 6);
        assert_eq!(t.dup_in_flight, 2, "inflight, thrice's second");
        assert_eq!(t.dup_answered_before, 2, "before, thrice's third");
        assert_eq!(t.dup_fanned_out_again, 1, "refanned");
        assert_eq!(t.dup_other, 1, "other");
        assert_eq!(t.disturbances, 2);
        assert_eq!(t.open_at_disturbances, 3);
        assert!((t.answered_before_rate() - 40.0).abs() < 1e-9);
        assert_eq!(t.other_examples.len(), 1);
        assert_eq!(
            t.other_examples,
            [format!(
                "other at {sub}: sent ?, requests 0-1:200 10-11:200, disturbances 130-180"
            )]
        );
        let failures = t.failures();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].starts_with("1 duplicate(s) no disturbance explains (other at "),
            "{failures:?}"
        );
        assert_eq!(
            failures[1],
            "2 duplicates answered before a disturbance (40.00% of expected pairs, more than 0.1%)"
        );
    }

    #[test]
    fn answered_before_duplicates_fail_above_a_thousandth_of_the_pairs() {
        let verdict = |pairs: usize| {
            let sub = Uuid::now_v7();
            let mut ledger = Ledger::default();
            let mut s = Script::new();
            s.disturbance(100, 150, 0);
            for n in 0..pairs {
                let e = format!("e{n}");
                ledger.expect_at(&e, sub);
                s.request(&e, sub, 50, 60, 200);
            }
            s.request("e0", sub, 160, 161, 200);
            let t = ledger.tally_logs(&[(sub, &s.log)], &[], |_| false, |_| None);
            assert_eq!((t.dup_answered_before, t.lost), (1, 0));
            t.failures()
        };
        assert_eq!(
            verdict(1000),
            Vec::<String>::new(),
            "one in 1,000 is allowed"
        );
        assert_eq!(
            verdict(999),
            [
                "1 duplicates answered before a disturbance (0.10% of expected pairs, more than 0.1%)"
            ]
        );
    }

    #[test]
    fn more_in_flight_duplicates_than_requests_open_fail() {
        let sub = Uuid::now_v7();
        let mut ledger = Ledger::default();
        ledger.expect_at("a", sub);
        ledger.expect_at("b", sub);
        let mut s = Script::new();
        // The receiver said one request was open; two duplicates claim to have been.
        s.disturbance(100, 150, 1);
        for e in ["a", "b"] {
            s.request(e, sub, 90, 120, 200);
            s.request(e, sub, 200, 201, 200);
        }
        let t = ledger.tally_logs(&[(sub, &s.log)], &[], |_| false, |_| None);
        assert_eq!(t.dup_in_flight, 2);
        assert_eq!(
            t.failures(),
            ["2 duplicates in flight at a disturbance, more than the 1 requests open then"]
        );
    }

    #[test]
    fn a_delivery_limit_dead_letter_always_fails() {
        let t = Tally {
            dead_by_reason: BTreeMap::from([("delivery_limit".to_owned(), 1)]),
            unexpected_dead: 1,
            ..Tally::default()
        };
        assert!(t.failures().iter().any(|f| f.contains("delivery_limit")));
    }

    fn outcome(tally: Tally, must_lose: Option<&str>) -> Outcome {
        Outcome {
            name: "kill".into(),
            tally,
            notes: vec![("kills".into(), "5".into())],
            failures: vec![],
            wall: Duration::from_secs(1),
            must_lose: must_lose.map(str::to_owned),
        }
    }

    #[test]
    fn a_clean_outcome_passes() {
        let o = outcome(
            Tally {
                expected: 3,
                delivered: 3,
                duplicates: 1,
                dup_in_flight: 1,
                open_at_disturbances: 4,
                ..Tally::default()
            },
            None,
        );
        let (text, pass) = report(&[o]);
        assert!(pass, "{text}");
        assert!(text.ends_with("PASS\n"), "{text}");
        assert!(
            text.contains("in_flight=1 (open at disturbances: 4"),
            "{text}"
        );
    }

    fn one_lost(id: &str) -> Tally {
        Tally {
            expected: 3,
            delivered: 2,
            lost: 1,
            lost_examples: vec![id.to_owned()],
            ..Tally::default()
        }
    }

    #[test]
    fn a_loss_fails_the_run() {
        let (text, pass) = report(&[outcome(one_lost("w1"), None)]);
        assert!(!pass, "{text}");
        assert!(text.ends_with("FAIL: kill: 1 lost\n"), "{text}");
    }

    /// The self-test passes only when the ledger fails with exactly the dropped pair lost.
    #[test]
    fn the_self_test_requires_exactly_the_dropped_pair_lost() {
        let (text, pass) = report(&[outcome(one_lost("w1"), Some("w1"))]);
        assert!(pass, "{text}");
        assert!(text.contains("the ledger failed as it must"), "{text}");

        let clean = Tally {
            expected: 3,
            delivered: 3,
            ..Tally::default()
        };
        let another = one_lost("w2");
        let mut more = one_lost("w1");
        more.bad_signatures = 1;
        for tally in [clean, another, more] {
            let (text, pass) = report(&[outcome(tally, Some("w1"))]);
            assert!(!pass, "{text}");
            assert!(
                text.contains("FAIL: kill: the ledger's self-test"),
                "{text}"
            );
            assert!(text.contains("did NOT fail as it must"), "{text}");
        }
    }
}
