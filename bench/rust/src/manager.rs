//! The manager group.
//!
//! `bench/python/manager.py` does the same work with CPython's `multiprocessing.Manager()`:
//! starting the manager (the server process runs and answers), shutting it down, and from a child
//! process using proxies made in the parent: one `d[k] = v`, one `d[k]`, one `l.append(i)`, each
//! timed alone; and the resident memory of an idle server.

use std::time::{Duration, Instant};

use multiproc::manager::{DictProxy, ListProxy};
use multiproc::{Connection, Manager, Process};

use crate::median;

/// Start/shutdown cycles per run (CPython's baseline takes the median of 20).
const CYCLES: usize = 20;
/// Operations the child times, one by one, after its warm-up.
const OPS: u32 = 20_000;
const WARMUP: u32 = 500;

fn start_ms() -> f64 {
    let samples = (0..CYCLES)
        .map(|_| {
            let t = Instant::now();
            let manager = Manager::start().expect("start a manager");
            let took = t.elapsed().as_secs_f64();
            drop(manager);
            took
        })
        .collect();
    median(samples) * 1e3
}

fn shutdown_ms() -> f64 {
    let samples = (0..CYCLES)
        .map(|_| {
            let mut manager = Manager::start().expect("start a manager");
            // A proxy in use, as in a real program.
            manager.dict::<u32, u32>().expect("dict").insert(&1, &1).expect("insert");
            let t = Instant::now();
            manager.shutdown().expect("shut down");
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(samples) * 1e3
}

/// Times `op(i)` alone for each of `OPS` operations (after a warm-up); the median, in seconds.
fn time_each(mut op: impl FnMut(u32)) -> f64 {
    for i in 0..WARMUP {
        op(i);
    }
    let samples = (0..OPS)
        .map(|i| {
            let t = Instant::now();
            op(i);
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(samples)
}

fn child_dict_set(d: DictProxy<u32, u32>, mut out: Connection) -> multiproc::Result<()> {
    out.send(&time_each(|i| d.insert(&i, &i).expect("d[k] = v")))
}

fn child_dict_get(d: DictProxy<u32, u32>, mut out: Connection) -> multiproc::Result<()> {
    out.send(&time_each(|i| {
        std::hint::black_box(d.get(&(i % 100)).expect("d[k]"));
    }))
}

fn child_list_append(l: ListProxy<u32>, mut out: Connection) -> multiproc::Result<()> {
    out.send(&time_each(|i| l.append(&i).expect("append")))
}

/// Runs `child` in a child process with a proxy made here; returns its median, in microseconds.
fn from_child(which: &str) -> f64 {
    let manager = Manager::start().expect("start a manager");
    let (mut ours, theirs) = multiproc::pipe().expect("pipe");
    let mut child = match which {
        "set" => Process::new(child_dict_set, (manager.dict().expect("dict"), theirs)),
        "get" => {
            let d = manager.dict().expect("dict");
            d.update((0..100u32).map(|i| (i, i)).collect::<Vec<_>>().iter().map(|(k, v)| (k, v))).expect("fill");
            Process::new(child_dict_get, (d, theirs))
        }
        _ => Process::new(child_list_append, (manager.list(&[]).expect("list"), theirs)),
    };
    child.start().expect("start the child");
    let seconds: f64 = ours.recv().expect("the child's result");
    child.join().expect("join the child");
    seconds * 1e6
}

/// Kilobytes resident in a manager's server with one dict, idle.
fn server_rss_kb() -> f64 {
    let manager = Manager::start().expect("start a manager");
    let d = manager.dict::<u32, u32>().expect("dict");
    d.insert(&1, &1).expect("insert");
    std::thread::sleep(Duration::from_millis(100));
    let pid = manager.server_pid().expect("server pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

pub(crate) fn run(args: &[&str]) -> Option<String> {
    let value = match args {
        ["manager_start"] => start_ms(),
        ["manager_shutdown"] => shutdown_ms(),
        ["manager_dict_set"] => from_child("set"),
        ["manager_dict_get"] => from_child("get"),
        ["manager_list_append"] => from_child("append"),
        ["manager_server_rss"] => server_rss_kb(),
        _ => return None,
    };
    Some(value.to_string())
}
