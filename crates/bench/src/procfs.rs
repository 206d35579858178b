//! CPU time and memory of the processes that share the machine during a scenario, read
//! from `/proc`: `hookwire serve`, RabbitMQ's `beam.smp`, the receiver's threads and the
//! bench itself.

use std::time::Instant;

use serde::Serialize;

use crate::receiver::THREAD_NAME;

/// `utime + stime` of `/proc/<path>/stat`, in clock ticks.
fn ticks(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux in practice).
pub fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The pid of the machine's own RabbitMQ (its Erlang VM), if one runs here: the one whose
/// home is `/var/lib/rabbitmq`, else any RabbitMQ VM whose command line does not mention
/// `not_marked` (what `--cluster`'s nodes' directories start with).
pub fn rabbitmq_pid(not_marked: &str) -> Option<u32> {
    let vms = rabbitmq_vms();
    vms.iter()
        .find(|(_, cmdline)| cmdline.contains("-home /var/lib/rabbitmq "))
        .or_else(|| {
            vms.iter()
                .find(|(_, cmdline)| !cmdline.contains(not_marked))
        })
        .map(|(pid, _)| *pid)
}

/// The pids of the RabbitMQ VMs whose command line mentions `marker` (a cluster's
/// directory).
pub fn rabbitmq_pids_with(marker: &str) -> Vec<u32> {
    rabbitmq_vms()
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains(marker))
        .map(|(pid, _)| pid)
        .collect()
}

/// Every RabbitMQ Erlang VM on the machine, with its command line (NULs as spaces).
fn rabbitmq_vms() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "beam.smp" {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("rabbit") {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Resident memory of `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Busy ticks of the whole machine, every core (`/proc/stat`): whatever else runs shows
/// up as the difference from the processes the bench watches.
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    Some(
        [0, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|&i| fields.get(i))
            .sum(),
    )
}

/// CPU ticks of the receiver's threads.
fn receiver_ticks() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == THREAD_NAME)
        })
        .filter_map(|t| ticks(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// CPU counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    at: Instant,
    serve: Option<u64>,
    rabbitmq: Option<u64>,
    receiver: u64,
    bench: u64,
    machine: Option<u64>,
}

/// CPU used between two snapshots, in % of one core (200 % is both cores of this machine).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuSplit {
    /// `hookwire serve`.
    pub serve_pct: Option<f64>,
    /// RabbitMQ's `beam.smp`.
    pub rabbitmq_pct: Option<f64>,
    /// The receiver's threads.
    pub receiver_pct: f64,
    /// The rest of the bench process: the publisher and, in baseline, the consumer.
    pub bench_pct: f64,
    /// Everything else on the machine (other users' builds and tests, the kernel's own
    /// threads): the machine's busy time less the four above.
    pub other_pct: Option<f64>,
}

/// The processes whose CPU a scenario reports.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// `hookwire serve`, when it runs.
    pub serve: Option<u32>,
    /// RabbitMQ: the machine's broker, or the three nodes of a cluster (their sum).
    pub rabbitmq: [Option<u32>; 3],
    /// Ticks per second.
    pub hz: f64,
}

impl Watched {
    /// Reads every counter now.
    pub fn snapshot(&self) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            serve: self.serve.and_then(|p| ticks(&format!("/proc/{p}/stat"))),
            rabbitmq: {
                let each: Vec<u64> = self
                    .rabbitmq
                    .iter()
                    .flatten()
                    .filter_map(|p| ticks(&format!("/proc/{p}/stat")))
                    .collect();
                (!each.is_empty()).then(|| each.iter().sum())
            },
            receiver: receiver_ticks(),
            bench: ticks("/proc/self/stat").unwrap_or(0),
            machine: machine_busy_ticks(),
        }
    }

    /// The split since `before`.
    pub fn since(&self, before: &CpuSnapshot) -> CpuSplit {
        let now = self.snapshot();
        let secs = now.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let pct = |ticks: u64| ticks as f64 / self.hz / secs * 100.0;
        let diff = |a: Option<u64>, b: Option<u64>| Some(pct(b?.saturating_sub(a?)));
        let receiver = now.receiver.saturating_sub(before.receiver);
        let bench = now.bench.saturating_sub(before.bench);
        let serve_pct = diff(before.serve, now.serve);
        let rabbitmq_pct = diff(before.rabbitmq, now.rabbitmq);
        let other_pct = diff(before.machine, now.machine).map(|machine| {
            (machine - pct(bench) - serve_pct.unwrap_or(0.0) - rabbitmq_pct.unwrap_or(0.0)).max(0.0)
        });
        CpuSplit {
            serve_pct,
            rabbitmq_pct,
            receiver_pct: pct(receiver),
            bench_pct: pct(bench.saturating_sub(receiver)),
            other_pct,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_counters() {
        assert!(ticks("/proc/self/stat").is_some());
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
    }
}
