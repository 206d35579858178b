//! The ledger: every (event, subscription) pair that must be delivered, checked against
//! what the receivers answered 2xx and what was dead-lettered; and the report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use hookwire_core::event::webhook_id;
use uuid::Uuid;

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
            self.expected.insert(
                webhook_id(event_id, &s.sub.id),
                (event_id.to_owned(), s.sub.id),
            );
        }
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
        let dead_pairs: HashSet<String> = dead
            .iter()
            .filter_map(|d| Some(webhook_id(d.event_id.as_ref()?, d.subscription.as_ref()?)))
            .collect();
        let mut out = Vec::new();
        for s in sinks {
            let delivered = s.delivered();
            let seen = s.requested_ids();
            let (mut never, mut failed) = (0, 0);
            for (id, (_, sub)) in &self.expected {
                if *sub != s.sub.id || delivered.contains_key(id) || dead_pairs.contains(id) {
                    continue;
                }
                if seen.contains(id) {
                    failed += 1
                } else {
                    never += 1
                }
            }
            if never + failed > 0 {
                out.push(format!(
                    "{}: {never} never requested, {failed} requested but never 2xx",
                    s.sub.description
                ));
            }
        }
        out.join("; ")
    }

    /// Counts what arrived and what died. `allowed` says which dead letters the scenario
    /// expects; `delivery_limit` is never allowed.
    pub fn tally(&self, sinks: &[&Sink], dead: &[Dead], allowed: impl Fn(&Dead) -> bool) -> Tally {
        let bad_signatures = sinks.iter().map(|s| s.bad_signatures()).sum();
        // Each receiver's counts are looked up in place: a soak's are too many to copy.
        let delivered: HashMap<Uuid, _> = sinks.iter().map(|s| (s.sub.id, s.delivered())).collect();
        let mut dead_pairs = HashSet::new();
        let mut t = Tally {
            expected: self.expected.len(),
            bad_signatures,
            ..Tally::default()
        };
        for d in dead {
            *t.dead_by_reason.entry(d.reason.clone()).or_insert(0) += 1;
            if let (Some(e), Some(s)) = (&d.event_id, &d.subscription) {
                dead_pairs.insert(webhook_id(e, s));
            }
            if d.reason == "delivery_limit" || !allowed(d) {
                t.unexpected_dead += 1;
            }
        }
        for (id, (_, sub)) in &self.expected {
            match delivered.get(sub).and_then(|d| d.get(id)) {
                Some(n) => {
                    t.delivered += 1;
                    t.duplicates += n - 1;
                }
                None if dead_pairs.contains(id) => t.dead_expected += 1,
                None => t.lost += 1,
            }
        }
        t
    }
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
    /// Extra 2xx answers for pairs already delivered.
    pub duplicates: usize,
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
}

impl Outcome {
    /// Every reason to fail.
    pub fn all_failures(&self) -> Vec<String> {
        let mut out = self.tally.failures();
        out.extend(self.failures.iter().cloned());
        out
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
    use super::*;

    #[test]
    fn a_delivery_limit_dead_letter_always_fails() {
        let t = Tally {
            dead_by_reason: BTreeMap::from([("delivery_limit".to_owned(), 1)]),
            unexpected_dead: 1,
            ..Tally::default()
        };
        assert!(t.failures().iter().any(|f| f.contains("delivery_limit")));
    }

    #[test]
    fn a_clean_outcome_passes() {
        let o = Outcome {
            name: "kill".into(),
            tally: Tally {
                expected: 3,
                delivered: 3,
                duplicates: 1,
                ..Tally::default()
            },
            notes: vec![("kills".into(), "5".into())],
            failures: vec![],
            wall: Duration::from_secs(1),
        };
        let (text, pass) = report(&[o]);
        assert!(pass, "{text}");
        assert!(text.ends_with("PASS\n"), "{text}");
    }
}
