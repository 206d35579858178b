//! What one scenario expects and what arrived: one slot per (event, subscriber), the
//! publish time of every event, and the latency of every first receipt.
//!
//! The receiver and the baseline consumer both count here, so hookwire and the broker
//! alone are measured the same way: from just before `basic.publish` to receipt.

use std::ops::Range;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The next tally's [`Tally::run`].
static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

/// The most subscribers per event a tally tracks: an organization's most webhooks.
pub const MAX_FANOUT: usize = 1000;

/// How the receiver answers the requests of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 to everything.
    Ok,
    /// 500 to the first attempt of `percent` % of the events (chosen by a hash of the
    /// event's number), 200 otherwise.
    FailFirst {
        /// Share of events whose first attempt fails.
        percent: u64,
    },
    /// 500 to everything: deliveries end up parked in the retry tiers.
    AlwaysFail,
}

/// The counts of one scenario.
#[derive(Debug)]
pub struct Tally {
    events: usize,
    fanout: usize,
    mode: Mode,
    epoch: Instant,
    /// Nanoseconds since `epoch` just before event `seq` was published; 0: not yet.
    sent_ns: Vec<AtomicU64>,
    /// Per (event, subscriber) slot: whether it was received (answered 200).
    received: Vec<AtomicBool>,
    /// Requests per (event, subscriber) slot.
    attempts: Vec<AtomicU32>,
    /// Publish-to-receipt latency per slot, in ns; 0: not received.
    latency_ns: Vec<AtomicU64>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    failed_answers: AtomicU64,
    first_attempts: AtomicU64,
    strays: AtomicU64,
    /// Tells this tally's events from other scenarios' and rounds': a late delivery of
    /// theirs is a stray, not one of these.
    run: u64,
    first_sent_ns: AtomicU64,
    last_received_ns: AtomicU64,
    /// How long the receiver takes to answer each request (a slow receiver).
    answer_delay: Duration,
    /// An overloaded receiver's answers, instead of `answer_delay`.
    overload: Option<Overload>,
    /// Requests turned away with 429 by an overloaded receiver.
    rejected: AtomicU64,
}

/// A receiver whose answer time grows with the requests it holds past a knee, and that
/// answers 429 with `Retry-After: 1` past a second one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    /// The answer time up to `knee` requests in flight.
    pub base: Duration,
    /// In flight (this request included) up to which answers take `base`.
    pub knee: u64,
    /// Added per request in flight past `knee`.
    pub step: Duration,
    /// In flight past which a request is answered 429 at once.
    pub reject_past: u64,
}

impl Overload {
    /// The answer to a request that finds `in_flight` requests held (itself included):
    /// `None` for a 429, else how long to wait before the 200.
    pub fn answer(&self, in_flight: u64) -> Option<Duration> {
        if in_flight > self.reject_past {
            return None;
        }
        let extra = u32::try_from(in_flight.saturating_sub(self.knee)).unwrap_or(u32::MAX);
        Some(self.base + self.step * extra)
    }
}

/// Publish-to-receipt percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (nanoseconds).
    pub fn of(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1] as f64 / 1e6
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

impl Tally {
    /// A tally for `events` events of `fanout` subscribers each.
    pub fn new(events: usize, fanout: usize, mode: Mode, epoch: Instant) -> Self {
        assert!(
            (1..=MAX_FANOUT).contains(&fanout),
            "fanout 1..={MAX_FANOUT}"
        );
        let slots = events * fanout;
        Self {
            events,
            fanout,
            mode,
            epoch,
            sent_ns: (0..events).map(|_| AtomicU64::new(0)).collect(),
            received: (0..slots).map(|_| AtomicBool::new(false)).collect(),
            attempts: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            latency_ns: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed_answers: AtomicU64::new(0),
            first_attempts: AtomicU64::new(0),
            strays: AtomicU64::new(0),
            run: NEXT_RUN.fetch_add(1, Relaxed),
            first_sent_ns: AtomicU64::new(u64::MAX),
            last_received_ns: AtomicU64::new(0),
            answer_delay: Duration::ZERO,
            overload: None,
            rejected: AtomicU64::new(0),
        }
    }

    /// The same tally, whose receiver is overloaded as `overload` says.
    pub fn overloaded(self, overload: Overload) -> Self {
        Self {
            overload: Some(overload),
            ..self
        }
    }

    /// The overloaded receiver's profile, if any.
    pub fn overload(&self) -> Option<Overload> {
        self.overload
    }

    /// Counts a request turned away with 429.
    pub fn reject(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// Requests turned away with 429.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    /// When the last delivery was received, if any was.
    pub fn last_received_at(&self) -> Option<Instant> {
        match self.last_received_ns.load(Relaxed) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns)),
        }
    }

    /// The same tally, whose receiver answers each request `delay` after it arrived
    /// (its latency is counted at arrival).
    pub fn answering_after(self, delay: Duration) -> Self {
        Self {
            answer_delay: delay,
            ..self
        }
    }

    /// How long the receiver waits before answering.
    pub fn answer_delay(&self) -> Duration {
        self.answer_delay
    }

    /// Events of the scenario.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Deliveries expected: events × subscribers.
    pub fn expected(&self) -> u64 {
        (self.events * self.fanout) as u64
    }

    fn now_ns(&self) -> u64 {
        // At least 1, so that 0 keeps meaning "not yet".
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Records that event `seq` is about to be published.
    pub fn mark_sent(&self, seq: usize) {
        let now = self.now_ns();
        if let Some(slot) = self.sent_ns.get(seq) {
            slot.store(now, Relaxed);
        }
        self.first_sent_ns.fetch_min(now, Relaxed);
    }

    /// Whether the first attempt of event `seq` fails in [`Mode::FailFirst`].
    pub fn fails_first(seq: usize, percent: u64) -> bool {
        // Knuth's multiplicative hash spreads the failures over the run.
        (seq as u64).wrapping_mul(2_654_435_761) % 100 < percent
    }

    /// The tag this tally's events carry.
    pub fn run(&self) -> u64 {
        self.run
    }

    /// The receiver's answer to one request for event `seq` of `run` at subscriber `k`,
    /// counted.
    pub fn on_request(&self, run: u64, seq: usize, k: usize) -> u16 {
        if run != self.run || seq >= self.events || k >= self.fanout {
            self.strays.fetch_add(1, Relaxed);
            // 200, so that a stray delivery is counted once and never retried.
            return 200;
        }
        let prior = self.attempts[seq * self.fanout + k].fetch_add(1, Relaxed);
        if prior == 0 {
            self.first_attempts.fetch_add(1, Relaxed);
        }
        let fail = match self.mode {
            Mode::Ok => false,
            Mode::FailFirst { percent } => prior == 0 && Self::fails_first(seq, percent),
            Mode::AlwaysFail => true,
        };
        if fail {
            self.failed_answers.fetch_add(1, Relaxed);
            return 500;
        }
        self.deliver(run, seq, k);
        200
    }

    /// Counts event `seq` of `run` as received by subscriber `k`.
    pub fn deliver(&self, run: u64, seq: usize, k: usize) {
        let now = self.now_ns();
        let slot = seq * self.fanout + k;
        let (Some(received), true) = (self.received.get(slot), run == self.run && k < self.fanout)
        else {
            self.strays.fetch_add(1, Relaxed);
            return;
        };
        if received.swap(true, Relaxed) {
            self.duplicates.fetch_add(1, Relaxed);
            return;
        }
        let sent = self.sent_ns[seq].load(Relaxed);
        if sent > 0 {
            self.latency_ns[slot].store(now.saturating_sub(sent).max(1), Relaxed);
        }
        self.last_received_ns.fetch_max(now, Relaxed);
        self.delivered.fetch_add(1, Relaxed);
    }

    /// Distinct deliveries so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    /// Deliveries received more than once.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Relaxed)
    }

    /// Requests answered 500 on purpose.
    pub fn failed_answers(&self) -> u64 {
        self.failed_answers.load(Relaxed)
    }

    /// Slots that saw at least one request.
    pub fn first_attempts(&self) -> u64 {
        self.first_attempts.load(Relaxed)
    }

    /// Requests that named no slot of this scenario.
    pub fn strays(&self) -> u64 {
        self.strays.load(Relaxed)
    }

    /// Seconds from the first publish to the last receipt.
    pub fn span_secs(&self) -> f64 {
        let first = self.first_sent_ns.load(Relaxed);
        let last = self.last_received_ns.load(Relaxed);
        if first == u64::MAX || last <= first {
            return 0.0;
        }
        (last - first) as f64 / 1e9
    }

    /// Publish-to-receipt latency of every delivery received.
    pub fn latencies(&self) -> Percentiles {
        self.latencies_of(0..self.events)
    }

    /// Publish-to-receipt latency of the deliveries of events `seqs` received.
    pub fn latencies_of(&self, seqs: Range<usize>) -> Percentiles {
        let slots = seqs.start * self.fanout..(seqs.end * self.fanout).min(self.latency_ns.len());
        Percentiles::of(
            self.latency_ns[slots]
                .iter()
                .map(|l| l.load(Relaxed))
                .filter(|&l| l > 0)
                .collect(),
        )
    }

    /// Distinct deliveries of events `seqs` received.
    pub fn delivered_of(&self, seqs: Range<usize>) -> u64 {
        let slots = seqs.start * self.fanout..(seqs.end * self.fanout).min(self.received.len());
        self.received[slots]
            .iter()
            .filter(|received| received.load(Relaxed))
            .count() as u64
    }
}

/// The run and the event number in a body ([`crate::amqp::event`]): the hex digits after
/// `/reports/` and the digits after `/runs/` in its URL field.
pub fn parse_run_and_seq(body: &[u8]) -> Option<(u64, usize)> {
    fn after<'a>(body: &'a [u8], mark: &[u8], digit: fn(&u8) -> bool) -> Option<&'a str> {
        let at = body.windows(mark.len()).position(|w| w == mark)? + mark.len();
        let digits = body[at..].iter().take_while(|b| digit(b)).count();
        std::str::from_utf8(&body[at..at + digits]).ok()
    }
    let run = u64::from_str_radix(after(body, b"/reports/", u8::is_ascii_hexdigit)?, 16).ok()?;
    let seq = after(body, b"/runs/", u8::is_ascii_digit)?.parse().ok()?;
    Some((run, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_slot_once_and_fails_first_attempts_on_demand() {
        let t = Tally::new(10, 2, Mode::FailFirst { percent: 30 }, Instant::now());
        let failing: Vec<usize> = (0..10).filter(|&s| Tally::fails_first(s, 30)).collect();
        assert!(!failing.is_empty() && failing.len() < 10);
        let run = t.run();
        for seq in 0..10 {
            t.mark_sent(seq);
            for k in 0..2 {
                let first = t.on_request(run, seq, k);
                assert_eq!(first == 500, failing.contains(&seq));
                if first == 500 {
                    assert_eq!(t.on_request(run, seq, k), 200);
                }
            }
        }
        assert_eq!(t.delivered(), t.expected());
        assert_eq!(t.failed_answers(), 2 * failing.len() as u64);
        assert_eq!(t.on_request(run, 0, 0), 200);
        assert_eq!(t.duplicates(), 1);
        assert_eq!(t.on_request(run, 10, 0), 200);
        assert_eq!(t.strays(), 1);
        let other = Tally::new(10, 2, Mode::Ok, Instant::now());
        assert_eq!(t.on_request(other.run(), 0, 0), 200, "another run's event");
        assert_eq!((t.strays(), t.duplicates()), (2, 1));
        assert_eq!(t.latencies().count, 20);
        assert_eq!(t.latencies_of(2..5).count, 6);
        assert_eq!(t.delivered_of(2..5), 6);
    }

    #[test]
    fn an_overloaded_receiver_slows_past_its_knee_and_rejects_past_the_second() {
        let o = Overload {
            base: Duration::from_millis(5),
            knee: 16,
            step: Duration::from_millis(5),
            reject_past: 40,
        };
        assert_eq!(o.answer(1), Some(Duration::from_millis(5)));
        assert_eq!(o.answer(16), Some(Duration::from_millis(5)));
        assert_eq!(o.answer(18), Some(Duration::from_millis(15)));
        assert_eq!(o.answer(40), Some(Duration::from_millis(125)));
        assert_eq!(o.answer(41), None);
    }

    #[test]
    fn seq_is_read_from_the_url_field() {
        let body = br#"{"event":"report_run_completed","report_run_url":"https://app.mode.com/a/reports/1f/runs/42"}"#;
        assert_eq!(parse_run_and_seq(body), Some((31, 42)));
        assert_eq!(parse_run_and_seq(b"{}"), None);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = Percentiles::of((1..=1000).map(|i| i * 1_000_000).collect());
        assert_eq!(
            (p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms),
            (500.0, 990.0, 999.0, 1000.0)
        );
    }
}
