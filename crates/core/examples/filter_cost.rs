//! Measures filters on the costliest bodies of 64 KiB: the static bound, the steps and
//! bytes the evaluator counted, the CPU time of one evaluation (this thread's, from
//! `/proc/thread-self/schedstat`, so that other processes on the machine do not count;
//! median of repeated runs) and the peak of heap bytes allocated during it, by a counting
//! allocator.
//!
//! `cargo run --release -p hookwire-core --example filter_cost [FILTER]…`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// This thread's CPU time in nanoseconds.
fn cpu_ns() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

use hookwire_core::filter::{Cost, MAX_BODY_BYTES};
use hookwire_core::{Filter, FilterInput};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters move.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn body(dominant: &str) -> Vec<u8> {
    let room = MAX_BODY_BYTES as usize - 200;
    let fill = |unit: &str| {
        let count = (room - 2) / (unit.len() + 1);
        format!("[{}]", vec![unit; count].join(","))
    };
    let big = match dominant {
        "tags" => fill(r#""""#),
        "nums" => fill("1"),
        "items" => fill(r#"{"name":""}"#),
        "s" => format!("\"{}\"", "y".repeat(room - 2)),
        _ => {
            let entries: Vec<String> = (0..room / 12).map(|i| format!("\"{i:05x}\":0")).collect();
            format!("{{{}}}", entries.join(","))
        }
    };
    let mut fields = vec![
        ("tags", r#"["a","b"]"#.to_owned()),
        ("nums", "[1,2]".to_owned()),
        ("items", r#"[{"name":"a"}]"#.to_owned()),
        ("s", r#""abc""#.to_owned()),
        ("m", r#"{"k":"v"}"#.to_owned()),
    ];
    for field in &mut fields {
        if field.0 == dominant {
            field.1.clone_from(&big);
        }
    }
    let text: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", text.join(",")).into_bytes()
}

const TYPICAL: &str = r#"event_type == "report_run_completed" && body.report_run_url.startsWith("https://app.mode.com/acme/reports/")"#;
const TYPICAL_BODY: &[u8] = br#"{"event":"report_run_completed","report_run_url":"https://app.mode.com/acme/reports/r1/runs/1","tags":["q3","board"]}"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bodies: Vec<(&str, Vec<u8>)> = ["tags", "nums", "items", "s", "m"]
        .into_iter()
        .map(|d| (d, body(d)))
        .collect();
    for source in &args {
        let filter = match Filter::parse(source) {
            Ok(f) => f,
            Err(e) => {
                println!("REFUSED {source}\n  {e}");
                continue;
            }
        };
        let Cost { steps, bytes } = filter.cost();
        println!("ACCEPTED {source}\n  bound: {steps} steps, {bytes} bytes");
        for (name, body) in &bodies {
            let input = FilterInput::new("report_run_completed", body);
            let _ = filter.evaluate(&input); // decode the body once, outside the measure
            let base = CURRENT.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let evaluation = filter.evaluate(&input);
            let peak = PEAK.load(Ordering::Relaxed) - base;
            // Several evaluations per reading: the scheduler's CPU clock is coarse.
            let per_reading = 20;
            let mut times: Vec<f64> = (0..7)
                .map(|_| {
                    let started = cpu_ns();
                    for _ in 0..per_reading {
                        let _ = std::hint::black_box(filter.evaluate(&input));
                    }
                    (cpu_ns() - started) / 1e6 / f64::from(per_reading)
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let outcome = match &evaluation.result {
                Ok(v) => format!("{v:?}").chars().take(20).collect(),
                Err(e) => e.to_string().chars().take(60).collect::<String>(),
            };
            println!(
                "  {name:>5}: {:>9} steps {:>10} bytes counted, peak heap {:>10} B, {:>8.3} ms  {outcome}",
                evaluation.used.steps, evaluation.used.bytes, peak, times[3]
            );
        }
    }
    // The delivery path's usual filter: decode and match, as the engine does per event.
    let filter = Filter::parse(TYPICAL).expect("typical");
    let runs = 200_000;
    let started = cpu_ns();
    for _ in 0..runs {
        let input = FilterInput::new("report_run_completed", std::hint::black_box(TYPICAL_BODY));
        assert_eq!(filter.matches(&input), Ok(true));
    }
    let per = (cpu_ns() - started) / f64::from(runs);
    let input = FilterInput::new("report_run_completed", TYPICAL_BODY);
    let started = cpu_ns();
    for _ in 0..runs {
        assert_eq!(filter.matches(std::hint::black_box(&input)), Ok(true));
    }
    let decoded = (cpu_ns() - started) / f64::from(runs);

    println!(
        "typical filter: {per:.0} ns per event (decode and match), {decoded:.0} ns per match on a decoded body"
    );
}
