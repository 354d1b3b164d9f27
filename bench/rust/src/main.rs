//! `mpbench METRIC [ARGS]`: measures one metric of this crate and prints one number (the median of
//! the samples it took). `bench/compare` runs it interleaved with the CPython scripts.

mod codec;
mod connection;
mod manager;
mod peers;
mod pool;
mod process;
mod queue;
mod shm;
mod sync;

use std::time::{Duration, Instant};

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Repeats `op` for about `budget` (at least `min` times, at most `max`), returning seconds per op.
fn sample(budget: Duration, min: usize, max: usize, mut op: impl FnMut()) -> Vec<f64> {
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < max && (samples.len() < min || start.elapsed() < budget) {
        let t = Instant::now();
        op();
        samples.push(t.elapsed().as_secs_f64());
    }
    samples
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The metrics of one group: `run(args)` measures the metric `args` names and returns the line to
/// print, or `None` when the metric is not of this group.
type Group = fn(&[&str]) -> Option<String>;

/// Every group, in `bench/compare`'s order. A new group is a module with a `run` function here.
const GROUPS: &[(&str, Group)] = &[
    ("process", process::run),
    ("codec", codec::run),
    ("connection", connection::run),
    ("sync", sync::run),
    ("shared_memory", shm::run),
    ("queue", queue::run),
    ("manager", manager::run),
    ("pool", pool::run),
    ("peers", peers::run),
];

fn main() {
    // procspawn's children are this binary run again: its `init` takes them over here (and returns
    // at once in every other process).
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(peers::EXIT_AT_ONCE) => return,
        Some(peers::handrolled::WORKER) => return peers::handrolled::worker(),
        _ => {}
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for (_, run) in GROUPS {
        if let Some(line) = run(&args) {
            println!("{line}");
            return;
        }
    }
    let groups: Vec<&str> = GROUPS.iter().map(|(name, _)| *name).collect();
    eprintln!("usage: mpbench METRIC [ARGS]; no group ({}) knows {args:?}", groups.join(", "));
    std::process::exit(2);
}
