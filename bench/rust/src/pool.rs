//! The pool group: tiny-task throughput of map (chunksize 1 and default), apply_async and
//! imap_unordered, a synchronous apply's round trip, a new pool's first result, close + join, and an idle worker's memory.

use std::time::{Duration, Instant};

use multiproc::pool::{Options, Pool};

use crate::{median, sample};

pub(crate) const TASKS: u64 = 100_000;

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

fn new_pool() -> Pool {
    Pool::new(multiproc::cpu_count()).expect("pool")
}

/// Tasks per second of `run`, which performs `tasks` tasks (median over about a second, at least
/// two runs).
fn rate(tasks: u64, mut run: impl FnMut()) -> f64 {
    run(); // warm-up: workers started, windows sized
    let samples = sample(Duration::from_secs(1), 2, 50, &mut run);
    tasks as f64 / median(samples)
}

fn map_rate(chunksize: Option<usize>) -> f64 {
    let pool = new_pool();
    rate(TASKS, || {
        let options = chunksize.map_or_else(Options::new, |c| Options::new().chunksize(c));
        let values = pool.map_async_with(square, 0..TASKS, options).expect("map").get().expect("values");
        assert_eq!(values.len() as u64, TASKS);
    })
}

/// `maps` maps of `x * x` over [`TASKS`] values in chunks of `chunksize` after one warm-up map, for
/// a CPU profile of the whole pool (`perf stat -e task-clock` over two runs of different `maps`
/// gives the CPU of all processes per map); returns the mean seconds per map.
fn map_repeat(chunksize: usize, maps: usize) -> f64 {
    let pool = new_pool();
    let options = || Options::new().chunksize(chunksize);
    let run = || {
        let values = pool.map_async_with(square, 0..TASKS, options()).expect("map").get().expect("values");
        assert_eq!(values.len() as u64, TASKS);
    };
    run();
    let start = Instant::now();
    (0..maps).for_each(|_| run());
    start.elapsed().as_secs_f64() / maps.max(1) as f64
}

fn apply_async_rate() -> f64 {
    let pool = new_pool();
    rate(10_000, || {
        let results: Vec<_> = (0..10_000u64).map(|i| pool.apply_async(square, (i,)).expect("apply_async")).collect();
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(result.get().expect("value"), (i * i) as u64);
        }
    })
}

fn imap_unordered_rate() -> f64 {
    let pool = new_pool();
    rate(TASKS, || {
        let sum: u64 = pool.imap_unordered(square, 0..TASKS).expect("imap").map(|v| v.expect("value")).sum();
        assert!(sum > 0);
    })
}

/// A synchronous `apply` of a tiny task, one after another: µs per call (the median).
fn apply_rtt() -> f64 {
    let pool = new_pool();
    let call = || assert_eq!(pool.apply(square, (3u64,)).expect("apply"), 9);
    for _ in 0..100 {
        call();
    }
    median(sample(Duration::from_secs(1), 1000, 100_000, call)) * 1e6
}

fn start_first_result() -> f64 {
    let run = || {
        let pool = new_pool();
        assert_eq!(pool.map(square, [3]).expect("map"), [9]);
        pool.terminate();
    };
    let mut samples = Vec::new();
    for _ in 0..3 {
        run();
    }
    let start = Instant::now();
    while samples.len() < 200 && (samples.len() < 10 || start.elapsed() < Duration::from_secs(1)) {
        let t = Instant::now();
        let pool = new_pool();
        assert_eq!(pool.map(square, [3]).expect("map"), [9]);
        samples.push(t.elapsed().as_secs_f64());
        pool.terminate();
        pool.join().expect("join");
    }
    median(samples) * 1e3
}

fn close_join() -> f64 {
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 200 && (samples.len() < 10 || start.elapsed() < Duration::from_secs(1)) {
        let pool = new_pool();
        assert_eq!(pool.map(square, 0..100).expect("map").len(), 100);
        let t = Instant::now();
        pool.close();
        pool.join().expect("join");
        samples.push(t.elapsed().as_secs_f64());
    }
    median(samples) * 1e3
}

fn rss_kb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

fn worker_rss() -> f64 {
    let pool = new_pool();
    let n = pool.processes() as u64;
    let mut pids = pool.map_async_with(pid, 0..50 * n, Options::new().chunksize(1)).expect("map").get().expect("pids");
    pids.sort();
    pids.dedup();
    median(pids.into_iter().map(rss_kb).collect())
}

/// Keeps a CPU busy for `micros` microseconds (a CPU-bound task of a known length).
fn spin(micros: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < Duration::from_micros(micros) {
        spins = std::hint::black_box(spins + 1);
    }
    spins
}

/// Scaling, CPU-bound: seconds for `20 * workers` tasks of 3 ms on `workers` workers (chunksize 1).
fn cpu_bound(workers: usize) -> f64 {
    let pool = Pool::new(workers).expect("pool");
    let tasks = 20 * workers as u64;
    let run = || {
        let done = pool.map_async_with(spin, vec![3000; tasks as usize], Options::new().chunksize(1)).expect("map");
        assert_eq!(done.get().expect("values").len() as u64, tasks);
    };
    run();
    median(sample(Duration::from_secs(1), 3, 20, run))
}

/// Scaling, tiny tasks: tasks/s of map(x*x, chunksize=1) over 100k items on `workers` workers.
fn tiny(workers: usize) -> f64 {
    let pool = Pool::new(workers).expect("pool");
    rate(TASKS, || {
        let values =
            pool.map_async_with(square, 0..TASKS, Options::new().chunksize(1)).expect("map").get().expect("values");
        assert_eq!(values.len() as u64, TASKS);
    })
}

/// Nanoseconds of CPU a thread of this process has run (`/proc/self/task/TID/schedstat`).
fn thread_cpu_ns(tid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).expect("schedstat");
    stat.split_whitespace().next().and_then(|v| v.parse().ok()).expect("runtime")
}

/// The ids of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("tasks");
    tasks
        .filter_map(|t| t.ok().map(|t| t.file_name().to_string_lossy().into_owned()))
        .filter(|tid| std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).is_ok_and(|c| c.trim() == name))
        .collect()
}

/// Item 5 of issue 17: what the parent spends per task of `map(x*x, chunksize)` over 100k
/// items, in CPU nanoseconds of its scheduler thread and of the calling thread (median of 5 maps).
/// Prints "scheduler caller" (ns per task); the parent's ceiling is 1e9 / (their sum) tasks/s.
fn parent_cpu(chunksize: usize) -> (f64, f64) {
    let pool = new_pool();
    let run = || {
        let values = pool.map_async_with(square, 0..TASKS, Options::new().chunksize(chunksize)).expect("map");
        assert_eq!(values.get().expect("values").len() as u64, TASKS);
    };
    run();
    let scheduler = threads_named("multiproc-pool");
    assert_eq!(scheduler.len(), 1, "one scheduler thread: {scheduler:?}");
    // SAFETY: gettid has no preconditions.
    let caller = format!("{}", unsafe { libc::gettid() });
    let (mut sched, mut call) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (s0, c0) = (thread_cpu_ns(&scheduler[0]), thread_cpu_ns(&caller));
        run();
        sched.push((thread_cpu_ns(&scheduler[0]) - s0) as f64 / TASKS as f64);
        call.push((thread_cpu_ns(&caller) - c0) as f64 / TASKS as f64);
    }
    (median(sched), median(call))
}

/// Measures the pool metric `args` names.
pub(crate) fn run(args: &[&str]) -> Option<String> {
    let value = match args {
        ["pool_map_chunk1"] => map_rate(Some(1)),
        ["pool_map_default"] => map_rate(None),
        ["pool_map_chunksize", chunksize] => map_rate(Some(chunksize.parse().expect("chunksize"))),
        ["pool_map_repeat", chunksize, maps] => {
            map_repeat(chunksize.parse().expect("chunksize"), maps.parse().expect("maps"))
        }
        ["pool_apply_async_10k"] => apply_async_rate(),
        ["pool_apply_rtt"] => apply_rtt(),
        ["pool_imap_unordered_chunk1"] => imap_unordered_rate(),
        ["pool_start_first_result"] => start_first_result(),
        ["pool_close_join"] => close_join(),
        ["pool_worker_rss"] => worker_rss(),
        ["pool_cpu_bound", workers] => cpu_bound(workers.parse().expect("workers")),
        ["pool_tiny", workers] => tiny(workers.parse().expect("workers")),
        ["pool_parent_cpu", chunksize] => {
            let (scheduler, caller) = parent_cpu(chunksize.parse().expect("chunksize"));
            return Some(format!("{scheduler} {caller}"));
        }
        _ => return None,
    };
    Some(value.to_string())
}
