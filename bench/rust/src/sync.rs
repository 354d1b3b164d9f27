//! The sync group.
//!
//! `bench/python/sync.py` does the same work with CPython's `Lock`, `Value`, `Semaphore` and
//! `Event`, children started with `fork`. Ours: the counter's children are forked too (they inherit
//! the counter's mapping); the ping-pong children use the default method (the start method does not
//! matter once they run).

use std::time::Duration;

use multiproc::{Event, Lock, Process, Semaphore};

use crate::{median, monotonic_ns, sample};

/// How long each sync metric samples (after its warm-up).
const SYNC_BUDGET: Duration = Duration::from_millis(1000);

fn lock_uncontended() -> f64 {
    const BATCH: u32 = 100_000;
    let lock = Lock::new().expect("lock");
    let op = || {
        for _ in 0..BATCH {
            let guard = std::hint::black_box(&lock).acquire().expect("acquire");
            drop(std::hint::black_box(guard));
        }
    };
    op();
    median(sample(SYNC_BUDGET, 5, 100_000, op)) / f64::from(BATCH) * 1e9
}

/// Adds per process and trial (CPython's side adds 100 000: it is ten times slower or more).
const COUNTER_OPS: u64 = 1_000_000;
const COUNTER_TRIALS: usize = 5;

/// A page of anonymous memory shared with the children forked after it: the counter at offset 0,
/// then each child's (start, end) in nanoseconds of `CLOCK_MONOTONIC` on its own cache line.
struct SharedPage(*mut u8);

impl SharedPage {
    fn new() -> SharedPage {
        // SAFETY: a fresh anonymous mapping, no file, no address hint.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        SharedPage(ptr.cast())
    }

    fn counter(&self) -> *mut u64 {
        self.0.cast()
    }

    fn times(&self, slot: usize) -> *mut [u64; 2] {
        // SAFETY: slots 0 and 1 lie within the page (offsets 64 and 128).
        unsafe { self.0.add(64 * (slot + 1)).cast() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

/// Two forked children add 1 to a plain (non-atomic) counter `count` times each under our `Lock`,
/// starting together once both run; returns the adds per second over the span from the first
/// start to the last end.
fn counter_trial(count: u64) -> f64 {
    let page = SharedPage::new();
    let lock = Lock::new().expect("lock");
    let (ready, go) = (Semaphore::new(0).expect("semaphore"), Event::new().expect("event"));
    let workers: Vec<Process> = (0..2)
        .map(|slot| {
            let (lock, ready, go) = (lock.clone(), ready.clone(), go.clone());
            let (counter, times) = (page.counter() as usize, page.times(slot) as usize);
            let mut p = Process::fork(move || {
                let counter = counter as *mut u64;
                ready.release();
                go.wait();
                let start = monotonic_ns();
                for _ in 0..count {
                    let _guard = lock.acquire().expect("acquire");
                    // SAFETY: the page outlives the children; the lock serializes the adds.
                    unsafe { counter.write_volatile(counter.read_volatile() + 1) };
                }
                // SAFETY: this child's own slot of the page.
                unsafe { (times as *mut [u64; 2]).write_volatile([start, monotonic_ns()]) };
            });
            p.start().expect("start");
            p
        })
        .collect();
    for _ in 0..2 {
        ready.acquire_unguarded(None); // both children run: they start adding together
    }
    go.set();
    for mut w in workers {
        assert_eq!(w.join().expect("join"), 0);
    }
    // SAFETY: the children are gone; the page is ours alone.
    let (total, [a0, a1], [b0, b1]) =
        unsafe { (page.counter().read_volatile(), page.times(0).read_volatile(), page.times(1).read_volatile()) };
    if total != 2 * count {
        eprintln!("counter_2proc: lost updates: {total} != {}", 2 * count);
        std::process::exit(1);
    }
    (2 * count) as f64 / ((a1.max(b1) - a0.min(b0)) as f64 / 1e9)
}

fn counter_2proc() -> f64 {
    counter_trial(COUNTER_OPS / 10); // warm-up
    median((0..COUNTER_TRIALS).map(|_| counter_trial(COUNTER_OPS)).collect())
}

fn semaphore_echo(ping: Semaphore, pong: Semaphore) {
    loop {
        ping.acquire_unguarded(None);
        pong.release();
    }
}

fn event_echo(a: Event, b: Event) {
    loop {
        a.wait();
        a.clear();
        b.set();
    }
}

/// Round trips (`op`) with a child echoing through two primitives; median microseconds.
fn pingpong<T>(mut p: Process, x: &T, y: &T, op: fn(&T, &T)) -> f64 {
    p.start().expect("start");
    for _ in 0..1000 {
        op(x, y);
    }
    let us = median(sample(SYNC_BUDGET, 1000, 1_000_000, || op(x, y))) * 1e6;
    p.terminate().expect("terminate");
    p.join().expect("join");
    us
}

fn semaphore_pingpong() -> f64 {
    let (ping, pong) = (Semaphore::new(0).expect("sem"), Semaphore::new(0).expect("sem"));
    let p = Process::new(semaphore_echo, (ping.clone(), pong.clone()));
    pingpong(p, &ping, &pong, |ping, pong| {
        ping.release();
        pong.acquire_unguarded(None);
    })
}

fn event_pingpong() -> f64 {
    let (a, b) = (Event::new().expect("event"), Event::new().expect("event"));
    let p = Process::new(event_echo, (a.clone(), b.clone()));
    pingpong(p, &a, &b, |a, b| {
        a.set();
        b.wait();
        b.clear();
    })
}

/// Measures the sync metric `args` names.
pub(crate) fn run(args: &[&str]) -> Option<String> {
    let value = match args {
        ["lock_uncontended"] => lock_uncontended(),
        ["counter_2proc"] => counter_2proc(),
        ["semaphore_pingpong"] => semaphore_pingpong(),
        ["event_pingpong"] => event_pingpong(),
        _ => return None,
    };
    Some(value.to_string())
}
