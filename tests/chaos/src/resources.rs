//! `serve`'s resident memory and open file descriptors, sampled from `/proc`, and the rule
//! that decides whether either grows without bound.
//!
//! The rule, for a series of samples taken under a steady load: drop the first quarter
//! (warm-up: caches, pools and the post-restart backlog fill up), take the median of the
//! second quarter (`warm`), and fail when the last quarter (`late`) exceeds it by more
//! than the slack: RSS +20 % or +16 MiB, whichever is larger; fds +32.
//! - RSS: `late` is the last quarter's median, not its maximum: an outage's retry burst
//!   or a post-kill backlog briefly takes more buffers, which is load, not a leak; a leak
//!   raises the whole quarter.
//! - fds: `late` is the last quarter's minimum. Most fds are HTTP keep-alive connections,
//!   opened at a concurrency peak and kept until the pool's idle timeout (90 s): their
//!   count steps between about 90 and 250 at 50 events/s, for minutes at a time. A leaked
//!   fd never closes, so a leak lifts even the last quarter's lowest count.
//!
//! Since SIGKILLs restart `serve`, the rule is applied to the longest-lived process (a leak
//! that a restart clears) and to the whole run (growth that survives restarts, such as
//! state read back from the store). Only samples from the load phase are judged; the one
//! taken after the final drain is reported.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One sample of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Since the sampler started.
    pub at: Duration,
    /// The sampled process.
    pub pid: u32,
    /// `VmRSS`, in KiB.
    pub rss_kib: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: u64,
}

/// Reads `pid`'s RSS (KiB) and open fds; `None` when it has gone.
pub fn read(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss_kib, fds))
}

/// Samples whichever process `pid` names, every `every`, in a task of its own (so that
/// disturbances that block the scenario for seconds do not leave gaps).
#[derive(Debug)]
pub struct Sampler {
    pid: Arc<AtomicU32>,
    t0: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sampler {
    /// Starts sampling.
    pub fn start(pid: Arc<AtomicU32>, every: Duration) -> Self {
        let t0 = Instant::now();
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let task = tokio::spawn({
            let (pid, samples) = (pid.clone(), samples.clone());
            async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    take(&pid, t0, &samples);
                }
            }
        });
        Self {
            pid,
            t0,
            samples,
            task,
        }
    }

    /// One sample now (after the final drain); `None` when no process runs.
    pub fn sample_now(&self) -> Option<Sample> {
        take(&self.pid, self.t0, &self.samples)
    }

    /// Time since the sampler started: the clock of [`Sample::at`].
    pub fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Stops sampling; every sample, oldest first.
    pub fn finish(self) -> Vec<Sample> {
        self.task.abort();
        self.samples.lock().expect("lock").clone()
    }
}

fn take(pid: &AtomicU32, t0: Instant, samples: &Mutex<Vec<Sample>>) -> Option<Sample> {
    let pid = pid.load(Ordering::SeqCst);
    if pid == 0 {
        return None;
    }
    let (rss_kib, fds) = read(pid)?;
    let sample = Sample {
        at: t0.elapsed(),
        pid,
        rss_kib,
        fds,
    };
    samples.lock().expect("lock").push(sample);
    Some(sample)
}

/// Writes the samples as CSV (`at_s,pid,rss_kib,fds`), for a closer look at a run.
pub fn write_csv(path: &std::path::Path, samples: &[Sample]) -> std::io::Result<()> {
    let mut text = String::from("at_s,pid,rss_kib,fds\n");
    for s in samples {
        text.push_str(&format!(
            "{:.1},{},{},{}\n",
            s.at.as_secs_f64(),
            s.pid,
            s.rss_kib,
            s.fds
        ));
    }
    std::fs::write(path, text)
}

/// How much a series may grow between its second and last quarter, and how a quarter is
/// summed up.
#[derive(Debug, Clone, Copy)]
pub struct Slack {
    /// Whether the last quarter is summed up by its minimum instead of its median.
    pub floor: bool,
    /// A fraction of the warm value.
    pub ratio: f64,
    /// An absolute amount, in the series' unit; the larger of the two applies.
    pub absolute: f64,
}

/// RSS (KiB): +20 % or +16 MiB.
pub const RSS_SLACK: Slack = Slack {
    floor: false,
    ratio: 0.20,
    absolute: 16.0 * 1024.0,
};
/// Open fds: +32.
pub const FD_SLACK: Slack = Slack {
    floor: true,
    ratio: 0.0,
    absolute: 32.0,
};

/// The fewest samples a series needs to be judged (two per quarter).
pub const MIN_SAMPLES: usize = 8;

/// A series' second and last quarter, summed up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// The second quarter's median.
    pub warm: f64,
    /// The last quarter's median, or its minimum.
    pub late: f64,
    /// The most `late` may be.
    pub allowed: f64,
}

impl Growth {
    /// Measures `values` (oldest first); `None` when there are too few to judge.
    pub fn of(values: &[f64], slack: Slack) -> Option<Self> {
        let n = values.len();
        if n < MIN_SAMPLES {
            return None;
        }
        let warm = median(&values[n / 4..n / 2]);
        let last = &values[n - n / 4..];
        let late = if slack.floor {
            last.iter().copied().fold(f64::INFINITY, f64::min)
        } else {
            median(last)
        };
        Some(Self {
            warm,
            late,
            allowed: warm + (warm * slack.ratio).max(slack.absolute),
        })
    }

    /// Whether the series grew beyond its slack.
    pub fn grew(&self) -> bool {
        self.late > self.allowed
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The load-phase samples of the longest-lived process (by time between its first and
/// last sample).
fn longest_life(samples: &[Sample]) -> &[Sample] {
    let mut best: &[Sample] = &[];
    let mut start = 0;
    for i in 1..=samples.len() {
        if i == samples.len() || samples[i].pid != samples[start].pid {
            let life = &samples[start..i];
            let span = |l: &[Sample]| l.last().map_or(Duration::ZERO, |s| s.at - l[0].at);
            if best.is_empty() || span(life) > span(best) {
                best = life;
            }
            start = i;
        }
    }
    best
}

/// What the samples say: report figures, and a failure for each series that grew.
#[derive(Debug, Default)]
pub struct Verdict {
    /// `key=value` figures for the report.
    pub notes: Vec<(String, String)>,
    /// Reasons to fail.
    pub failures: Vec<String>,
}

/// Judges `samples` taken before `load_end` and reports start, warm, max and end (`after`,
/// the sample after the final drain) of RSS and fds.
pub fn judge(samples: &[Sample], load_end: Duration, after: Option<Sample>) -> Verdict {
    let load: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.at <= load_end)
        .collect();
    let life = longest_life(&load);
    let mut v = Verdict::default();
    let lives = 1 + load.windows(2).filter(|w| w[0].pid != w[1].pid).count();
    v.notes.push(("samples".into(), samples.len().to_string()));
    v.notes.push(("lives".into(), lives.to_string()));
    v.notes.push((
        "longest_life_s".into(),
        format!(
            "{:.0}",
            life.last()
                .map_or(Duration::ZERO, |s| s.at - life[0].at)
                .as_secs_f64()
        ),
    ));
    // Name, value of a sample, slack, and the value's unit for the report.
    type Series = (&'static str, fn(&Sample) -> f64, Slack, f64);
    let series: [Series; 2] = [
        ("rss_mib", |s| s.rss_kib as f64, RSS_SLACK, 1024.0),
        ("fds", |s| s.fds as f64, FD_SLACK, 1.0),
    ];
    for (name, value, slack, unit) in series {
        let stat = if slack.floor { "minimum" } else { "median" };
        let all: Vec<f64> = load.iter().map(value).collect();
        let fmt = |x: f64| {
            if unit > 1.0 {
                format!("{:.1}", x / unit)
            } else {
                format!("{x:.0}")
            }
        };
        let max = all.iter().copied().fold(f64::NAN, f64::max);
        let run = Growth::of(&all, slack);
        v.notes.push((
            format!("{name}(start/warm/max/end)"),
            format!(
                "{}/{}/{}/{}",
                all.first().map_or("-".into(), |x| fmt(*x)),
                run.map_or("-".into(), |g| fmt(g.warm)),
                if max.is_nan() { "-".into() } else { fmt(max) },
                after.as_ref().map_or("-".into(), |s| fmt(value(s))),
            ),
        ));
        let one: Vec<f64> = life.iter().map(value).collect();
        for (scope, growth) in [
            ("over the run", run),
            ("within one serve", Growth::of(&one, slack)),
        ] {
            match growth {
                Some(g) if g.grew() => v.failures.push(format!(
                    "{name} grows {scope}: last quarter's {stat} {} > second quarter's median {} + slack (at most {})",
                    fmt(g.late),
                    fmt(g.warm),
                    fmt(g.allowed)
                )),
                Some(_) => {}
                None => v.failures.push(format!(
                    "{name} {scope}: fewer than {MIN_SAMPLES} samples, too short to judge"
                )),
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[(u32, u64)]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, (pid, fds))| Sample {
                at: Duration::from_secs(2 * i as u64),
                pid: *pid,
                rss_kib: 50 * 1024,
                fds: *fds,
            })
            .collect()
    }

    #[test]
    fn a_steady_series_with_a_late_burst_passes() {
        let mut v = vec![40.0; 40];
        v[35] = 200.0;
        v[36] = 180.0;
        let g = Growth::of(&v, RSS_SLACK).expect("long enough");
        assert!(!g.grew(), "{g:?}");
    }

    #[test]
    fn fds_that_step_with_the_connection_pool_pass() {
        // Idle connections closed in the second quarter, a long peak in the last.
        let mut v = vec![200.0; 40];
        v[12..16].fill(90.0);
        v[30..39].fill(240.0);
        let g = Growth::of(&v, FD_SLACK).expect("long enough");
        assert!(!g.grew(), "{g:?}");
    }

    #[test]
    fn a_steady_climb_fails() {
        let v: Vec<f64> = (0..40).map(|i| 40.0 + 4.0 * f64::from(i)).collect();
        let g = Growth::of(&v, FD_SLACK).expect("long enough");
        assert!(g.grew(), "{g:?}");
    }

    #[test]
    fn rss_slack_is_the_larger_of_the_ratio_and_the_absolute() {
        let small = Growth::of(&[10_240.0; 8], RSS_SLACK).expect("long enough");
        assert_eq!(small.allowed, 10_240.0 + 16_384.0);
        let large = Growth::of(&[512_000.0; 8], RSS_SLACK).expect("long enough");
        assert_eq!(large.allowed, 512_000.0 * 1.2);
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        assert_eq!(Growth::of(&[1.0; 7], FD_SLACK), None);
    }

    #[test]
    fn the_longest_life_is_judged_and_restarts_are_counted() {
        // Two lives: a short one, then a long one whose fds climb.
        let mut s: Vec<(u32, u64)> = vec![(1, 40); 5];
        s.extend((0..30).map(|i| (2, 40 + 5 * i)));
        let v = judge(&series(&s), Duration::from_secs(3600), None);
        assert!(
            v.notes.contains(&("lives".into(), "2".into())),
            "{:?}",
            v.notes
        );
        assert!(
            v.failures
                .iter()
                .any(|f| f.contains("fds grows within one serve")),
            "{:?}",
            v.failures
        );
        assert!(
            !v.failures.iter().any(|f| f.contains("rss")),
            "{:?}",
            v.failures
        );
    }

    #[test]
    fn samples_after_the_load_are_not_judged() {
        let mut s: Vec<(u32, u64)> = vec![(1, 40); 20];
        s.extend(vec![(1, 400); 20]);
        let v = judge(&series(&s), Duration::from_secs(38), None);
        assert!(v.failures.is_empty(), "{:?}", v.failures);
    }
}
