//! What one receiver saw, as plain data the ledger reads: every request of every
//! webhook-id with when it started, when it was answered and how, and the disturbances
//! (SIGKILLs, broker restarts, connection closes) with the requests open during each.
//! From these every duplicate is classified ([`classify`]).

use std::collections::HashMap;
use std::time::Instant;

/// One request: when it arrived (as the receiver counted it), and when its answer was
/// handed to the connection, with its status; `None` while unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub start: Instant,
    pub answered: Option<(Instant, u16)>,
}

impl Request {
    /// Answered 2xx.
    pub fn delivered(&self) -> bool {
        self.answered.is_some_and(|(_, s)| (200..300).contains(&s))
    }

    /// Open at some moment of `d`: it started before `d` ended, and its answer was not
    /// handed over before `d` began.
    fn overlaps(&self, d: &Disturbance) -> bool {
        self.start <= d.to && self.answered.is_none_or(|(at, _)| at > d.from)
    }

    /// Answered (any status) before `d` began: hookwire could know its outcome.
    fn answered_before(&self, d: &Disturbance) -> bool {
        self.answered.is_some_and(|(at, _)| at <= d.from)
    }
}

/// A webhook-id's requests, in the order they arrived. The first is kept inline: nearly
/// every pair has one, and a soak keeps an entry per pair.
#[derive(Debug, Clone)]
pub struct History {
    first: Request,
    more: Vec<Request>,
}

impl History {
    fn new(first: Request) -> Self {
        Self {
            first,
            more: Vec::new(),
        }
    }

    fn push(&mut self, r: Request) -> usize {
        self.more.push(r);
        self.more.len()
    }

    fn get_mut(&mut self, i: usize) -> &mut Request {
        if i == 0 {
            &mut self.first
        } else {
            &mut self.more[i - 1]
        }
    }

    /// Every request, in the order they arrived.
    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        std::iter::once(&self.first).chain(&self.more)
    }

    /// 2xx answers.
    pub fn delivered(&self) -> usize {
        self.requests().filter(|r| r.delivered()).count()
    }

    /// When the first 2xx answer was handed over, if one was.
    pub fn first_delivered(&self) -> Option<Instant> {
        self.requests()
            .filter(|r| r.delivered())
            .filter_map(|r| Some(r.answered?.0))
            .min()
    }
}

/// A time during which acknowledgements could be lost: from the moment it began (a
/// SIGKILL: once serve was reaped; a broker restart or connection close: before the
/// command) until serve was delivering again (restarted and ready, or consuming again). A
/// request that arrives while serve is down was sent by the process that died, so a
/// kill's window runs to the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disturbance {
    pub from: Instant,
    pub to: Instant,
    /// Requests open at `from`, plus those that arrived until `to`: every request whose
    /// answer may not have reached a live `serve`.
    pub open: usize,
}

/// The start of a disturbance, as [`ReceiverLog::begin`] saw it.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    from: Instant,
    open: usize,
    received: usize,
}

/// What one receiver saw.
#[derive(Debug, Default)]
pub struct ReceiverLog {
    /// Every request, by webhook-id.
    pub pairs: HashMap<String, History>,
    /// Every disturbance, oldest first.
    pub disturbances: Vec<Disturbance>,
    /// Requests received so far.
    pub received: usize,
    /// Requests not answered yet: by request number, their webhook-id and index in its
    /// history.
    open: HashMap<usize, (String, usize)>,
}

impl ReceiverLog {
    /// Request `n` for `webhook_id` arrived at `at`.
    pub fn request(&mut self, n: usize, webhook_id: &str, at: Instant) {
        self.received += 1;
        let r = Request {
            start: at,
            answered: None,
        };
        let i = match self.pairs.get_mut(webhook_id) {
            Some(h) => h.push(r),
            None => {
                self.pairs.insert(webhook_id.to_owned(), History::new(r));
                0
            }
        };
        self.open.insert(n, (webhook_id.to_owned(), i));
    }

    /// Request `n` was answered `status` at `at`.
    pub fn answer(&mut self, n: usize, status: u16, at: Instant) {
        let Some((id, i)) = self.open.remove(&n) else {
            return;
        };
        if let Some(h) = self.pairs.get_mut(&id) {
            h.get_mut(i).answered = Some((at, status));
        }
    }

    /// Whether `webhook_id` was answered 2xx.
    pub fn delivered(&self, webhook_id: &str) -> bool {
        self.pairs
            .get(webhook_id)
            .is_some_and(|h| h.requests().any(Request::delivered))
    }

    /// Requests received but not answered yet.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// A disturbance begins at `at`.
    pub fn begin(&self, at: Instant) -> Mark {
        Mark {
            from: at,
            open: self.open.len(),
            received: self.received,
        }
    }

    /// The disturbance begun at `mark` ends at `at`.
    pub fn end(&mut self, mark: Mark, at: Instant) {
        self.disturbances.push(Disturbance {
            from: mark.from,
            to: at,
            open: mark.open + (self.received - mark.received),
        });
    }
}

/// Why a duplicate happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An earlier request of the pair was open during a disturbance: it cannot be known
    /// to have arrived. The price of at-least-once.
    InFlight,
    /// An earlier request of the pair was answered before a disturbance began: hookwire
    /// had its outcome (a 2xx, or a failure whose retry it had scheduled), and only the
    /// ack was missing.
    AnsweredBefore,
    /// No request of the pair came before the disturbance, but its event had been sent
    /// before it ended: the event was fanned out again after a lost ack, or sent again by
    /// the producer after a publish the broker stored but never confirmed; either made a
    /// second delivery of the pair.
    FannedOutAgain,
    /// No disturbance explains it.
    Other,
}

/// Classifies the duplicates of one pair: every 2xx answer after its first. `requests` are
/// the pair's, in the order they arrived; `sent` is when its event was first sent. Each
/// duplicate is explained by a disturbance that began before it arrived and had not ended
/// when the pair's first request arrived or its event was sent, and by an earlier request
/// of the pair that no other duplicate used: one open during that disturbance (in flight),
/// else one answered before it. Else, if the event was sent before that disturbance ended
/// (once per disturbance), the event was fanned out again. Else nothing explains it.
pub fn classify(
    requests: &[Request],
    sent: Option<Instant>,
    disturbances: &[Disturbance],
) -> Vec<Class> {
    let Some(first) = requests.first() else {
        return Vec::new();
    };
    let began = sent.map_or(first.start, |s| s.min(first.start));
    let mut used = vec![false; requests.len()];
    let mut refanned = vec![false; disturbances.len()];
    let mut out = Vec::new();
    let mut seen_delivery = false;
    for (i, dup) in requests.iter().enumerate() {
        if !dup.delivered() {
            continue;
        }
        if !seen_delivery {
            seen_delivery = true;
            continue;
        }
        let candidates: Vec<usize> = (0..disturbances.len())
            .filter(|&k| disturbances[k].from < dup.start && disturbances[k].to >= began)
            .collect();
        let earlier = |fits: &dyn Fn(&Request, &Disturbance) -> bool| {
            (0..i).find(|&j| {
                !used[j]
                    && candidates
                        .iter()
                        .any(|&k| fits(&requests[j], &disturbances[k]))
            })
        };
        let class = if let Some(j) = earlier(&|r, d| r.overlaps(d)) {
            used[j] = true;
            Class::InFlight
        } else if let Some(j) = earlier(&|r, d| r.answered_before(d)) {
            used[j] = true;
            Class::AnsweredBefore
        } else if let Some(&k) = candidates
            .iter()
            .find(|&&k| !refanned[k] && sent.is_some_and(|s| s <= disturbances[k].to))
        {
            refanned[k] = true;
            Class::FannedOutAgain
        } else {
            Class::Other
        };
        out.push(class);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn window(t0: Instant, from: u64, to: u64) -> Disturbance {
        Disturbance {
            from: at(t0, from),
            to: at(t0, to),
            open: 1,
        }
    }

    fn req(t0: Instant, start: u64, answered: u64, status: u16) -> Request {
        Request {
            start: at(t0, start),
            answered: Some((at(t0, answered), status)),
        }
    }

    use Class::*;

    #[test]
    fn a_request_open_at_a_kill_makes_its_redelivery_in_flight() {
        let t0 = Instant::now();
        let kills = [window(t0, 100, 300)];
        // Started before the kill, answered after it (to the dead process).
        let r = [req(t0, 50, 150, 200), req(t0, 400, 401, 200)];
        assert_eq!(classify(&r, None, &kills), [InFlight]);
        // Arrived while serve was down: sent by the process that died.
        let r = [req(t0, 200, 210, 200), req(t0, 400, 401, 200)];
        assert_eq!(classify(&r, None, &kills), [InFlight]);
        // Never answered at all, then delivered twice: one is explained.
        let open = Request {
            start: at(t0, 50),
            answered: None,
        };
        let r = [open, req(t0, 400, 401, 200), req(t0, 500, 501, 200)];
        assert_eq!(classify(&r, None, &kills), [InFlight]);
    }

    #[test]
    fn a_request_answered_before_a_kill_makes_its_redelivery_answered_before() {
        let t0 = Instant::now();
        let kills = [window(t0, 100, 300)];
        let r = [req(t0, 10, 90, 200), req(t0, 400, 401, 200)];
        assert_eq!(classify(&r, None, &kills), [AnsweredBefore]);
        // A 500 before the kill whose retry was scheduled: the redelivered attempt and the
        // retry both answered 2xx after it.
        let r = [
            req(t0, 10, 20, 500),
            req(t0, 400, 401, 200),
            req(t0, 1400, 1401, 200),
        ];
        assert_eq!(classify(&r, None, &kills), [AnsweredBefore]);
        // The kill that counts need not be the last one before the duplicate.
        let two = [window(t0, 100, 300), window(t0, 500, 600)];
        let r = [req(t0, 10, 90, 200), req(t0, 700, 701, 200)];
        assert_eq!(classify(&r, None, &two), [AnsweredBefore]);
    }

    #[test]
    fn an_event_sent_before_a_kill_and_delivered_twice_after_it_was_fanned_out_again() {
        let t0 = Instant::now();
        let kills = [window(t0, 100, 300)];
        let r = [req(t0, 400, 401, 200), req(t0, 410, 411, 200)];
        assert_eq!(classify(&r, Some(at(t0, 50)), &kills), [FannedOutAgain]);
        // Once per kill: a third delivery is not explained.
        let r = [
            req(t0, 400, 401, 200),
            req(t0, 410, 411, 200),
            req(t0, 420, 421, 200),
        ];
        assert_eq!(
            classify(&r, Some(at(t0, 50)), &kills),
            [FannedOutAgain, Other]
        );
        // Sent during the disturbance (a broker restart: the producer sent it again after
        // a publish that was stored but never confirmed).
        let r = [req(t0, 400, 401, 200), req(t0, 410, 411, 200)];
        assert_eq!(classify(&r, Some(at(t0, 150)), &kills), [FannedOutAgain]);
        // Sent after it ended: nothing explains it.
        assert_eq!(classify(&r, Some(at(t0, 350)), &kills), [Other]);
    }

    #[test]
    fn a_duplicate_no_disturbance_explains_is_other() {
        let t0 = Instant::now();
        let r = [req(t0, 10, 20, 200), req(t0, 30, 31, 200)];
        // No disturbance at all.
        assert_eq!(classify(&r, Some(t0), &[]), [Other]);
        // Only one that ended before the event was sent and the first request arrived.
        let before = [window(t0, 0, 5)];
        assert_eq!(classify(&r, Some(at(t0, 8)), &before), [Other]);
        // Only one that began after the duplicate arrived.
        let after = [window(t0, 40, 50)];
        assert_eq!(classify(&r, Some(t0), &after), [Other]);
        // One request explains one duplicate, not two.
        let kills = [window(t0, 100, 300)];
        let r = [
            req(t0, 10, 90, 200),
            req(t0, 400, 401, 200),
            req(t0, 500, 501, 200),
        ];
        assert_eq!(classify(&r, None, &kills), [AnsweredBefore, Other]);
        // A 2xx once is no duplicate, however many failures came before.
        let r = [
            req(t0, 10, 20, 500),
            req(t0, 30, 31, 500),
            req(t0, 40, 41, 200),
        ];
        assert_eq!(classify(&r, None, &kills), []);
    }

    #[test]
    fn the_log_counts_requests_open_during_a_disturbance() {
        let t0 = Instant::now();
        let mut log = ReceiverLog::default();
        log.request(0, "a", at(t0, 0));
        log.request(1, "b", at(t0, 1));
        log.answer(1, 200, at(t0, 2));
        let mark = log.begin(at(t0, 10));
        // Arrives while serve is down; answered 500.
        log.request(2, "c", at(t0, 11));
        log.answer(2, 500, at(t0, 12));
        log.end(mark, at(t0, 20));
        log.answer(0, 200, at(t0, 30));
        log.request(3, "a", at(t0, 40));
        assert_eq!(log.disturbances[0].open, 2, "a (open at the kill) and c");
        assert_eq!(log.open(), 1, "a's second request");
        assert_eq!(log.received, 4);
        let a: Vec<Request> = log.pairs["a"].requests().copied().collect();
        assert_eq!(
            a,
            [
                req(t0, 0, 30, 200),
                Request {
                    start: at(t0, 40),
                    answered: None
                }
            ]
        );
        assert_eq!(log.pairs["a"].first_delivered(), Some(at(t0, 30)));
        assert!(log.delivered("a") && log.delivered("b"));
        assert!(!log.delivered("c"), "a 500 is no delivery");
        assert_eq!(log.pairs.len(), 3);
    }
}
