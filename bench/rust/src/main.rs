//! `mpbench METRIC [ARGS]`: measures one metric of this crate and prints one number (the median of
//! the samples it took). `bench/compare` runs it interleaved with the CPython scripts.

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, Instant};

use multiproc::{Connection, Event, Handle, Lock, Process, Semaphore, StartMethod};

fn noop() {}

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

fn start_join(method: StartMethod) -> f64 {
    let run = || {
        let mut p = Process::new(noop, ()).with_start_method(method);
        p.start().expect("start");
        assert_eq!(p.join().expect("join"), 0);
    };
    for _ in 0..3 {
        run();
    }
    median(sample(Duration::from_secs(1), 20, 3000, run)) * 1e3
}

fn fork_waitpid() -> f64 {
    let run = || {
        // SAFETY: the bench process is single-threaded; the child only calls _exit.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert!(libc::WIFEXITED(status));
        }
    };
    for _ in 0..3 {
        run();
    }
    median(sample(Duration::from_secs(1), 20, 3000, run)) * 1e3
}

fn idle(go: Handle<UnixDatagram>) {
    let mut buf = [0u8; 8];
    let _ = go.recv(&mut buf);
}

fn rss_kb(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

fn child_rss() -> f64 {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let (go, go_child) = UnixDatagram::pair().expect("pair");
        let (ready, ready_child) = UnixDatagram::pair().expect("pair");
        let mut p = Process::new(idle_after_ready, (Handle::new(go_child), Handle::new(ready_child)));
        p.start().expect("start");
        let mut buf = [0u8; 8];
        ready.recv(&mut buf).expect("ready");
        samples.push(rss_kb(p.pid().expect("pid")));
        go.send(b"go").expect("go");
        p.join().expect("join");
    }
    median(samples)
}

fn idle_after_ready(go: Handle<UnixDatagram>, ready: Handle<UnixDatagram>) {
    ready.send(b"ready").expect("ready");
    idle(go);
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Small {
    id: u64,
    name: String,
    values: Vec<i32>,
    flag: bool,
}

fn codec() {
    let small = Small { id: 123456, name: "worker-7".into(), values: vec![1, -2, 3, 400], flag: true };
    let big = vec![7u8; 1 << 20];
    let time = |label: &str, iters: u32, mut f: Box<dyn FnMut()>| {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        println!("{label}: {:.1} ns", t.elapsed().as_secs_f64() * 1e9 / f64::from(iters));
    };
    let s = small.clone();
    time(
        "postcard small struct",
        200_000,
        Box::new(move || {
            let b = postcard::to_stdvec(&s).unwrap();
            let _: Small = postcard::from_bytes(&b).unwrap();
        }),
    );
    let s = small.clone();
    time(
        "bitcode  small struct",
        200_000,
        Box::new(move || {
            let b = bitcode::serialize(&s).unwrap();
            let _: Small = bitcode::deserialize(&b).unwrap();
        }),
    );
    time(
        "postcard u64",
        1_000_000,
        Box::new(|| {
            let b = postcard::to_stdvec(&42u64).unwrap();
            let _: u64 = postcard::from_bytes(&b).unwrap();
        }),
    );
    time(
        "bitcode  u64",
        1_000_000,
        Box::new(|| {
            let b = bitcode::serialize(&42u64).unwrap();
            let _: u64 = bitcode::deserialize(&b).unwrap();
        }),
    );
    let b1 = big.clone();
    time(
        "postcard 1 MiB bytes",
        200,
        Box::new(move || {
            let b = postcard::to_stdvec(&b1).unwrap();
            let _: Vec<u8> = postcard::from_bytes(&b).unwrap();
        }),
    );
    let b2 = big;
    time(
        "bitcode  1 MiB bytes",
        200,
        Box::new(move || {
            let b = bitcode::serialize(&b2).unwrap();
            let _: Vec<u8> = bitcode::deserialize(&b).unwrap();
        }),
    );
}

// The connection group.
//
// Every child is started with the default start method (the fork server). The CPython side is
// `bench/python/connection.py`, doing the same work with `Pipe()` and the `fork` method.

/// How long each connection metric samples (after its warm-up).
const CONN_BUDGET: Duration = Duration::from_millis(1000);

fn echo_value(mut conn: Connection) {
    while let Ok(v) = conn.recv::<u64>() {
        if conn.send(&v).is_err() {
            break;
        }
    }
}

fn echo_bytes(mut conn: Connection) {
    while let Ok(b) = conn.recv_bytes() {
        if conn.send_bytes(&b).is_err() {
            break;
        }
    }
}

/// The floor's echo: raw 8-byte reads and writes on a socket, no framing.
fn echo_raw(sock: Handle<UnixStream>) {
    let mut sock = sock.into_inner();
    let mut buf = [0u8; 8];
    while sock.read_exact(&mut buf).is_ok() {
        if sock.write_all(&buf).is_err() {
            break;
        }
    }
}

/// Counts messages until an empty one, then acknowledges the count; until end of file.
fn count_sink(mut conn: Connection) {
    let mut count = 0u64;
    while let Ok(b) = conn.recv_bytes() {
        if b.is_empty() {
            if conn.send(&count).is_err() {
                break;
            }
            count = 0;
        } else {
            count += 1;
        }
    }
}

/// Acknowledges every message with its length; until end of file.
fn len_sink(mut conn: Connection) {
    while let Ok(b) = conn.recv_bytes() {
        if conn.send(&(b.len() as u64)).is_err() {
            break;
        }
    }
}

/// Starts `target` on the child end of a new pipe; returns the parent end and the process.
fn with_child<F: multiproc::Target<(Connection,)>>(target: F) -> (Connection, Process) {
    let (parent, child) = multiproc::pipe().expect("pipe");
    let mut p = Process::new(target, (child,));
    p.start().expect("start");
    (parent, p)
}

fn finish(conn: Connection, mut p: Process) {
    drop(conn); // end of file: the child's loop ends
    assert_eq!(p.join().expect("join"), 0);
}

fn rtt_value() -> f64 {
    let (mut conn, p) = with_child(echo_value);
    let mut op = || {
        conn.send(&42u64).expect("send");
        assert_eq!(conn.recv::<u64>().expect("recv"), 42);
    };
    for _ in 0..1000 {
        op();
    }
    let us = median(sample(CONN_BUDGET, 1000, 1_000_000, op)) * 1e6;
    finish(conn, p);
    us
}

fn bytes8_op(conn: &mut Connection) {
    conn.send_bytes(b"01234567").expect("send");
    assert_eq!(conn.recv_bytes().expect("recv").len(), 8);
}

fn rtt_bytes8() -> f64 {
    let (mut conn, p) = with_child(echo_bytes);
    for _ in 0..1000 {
        bytes8_op(&mut conn);
    }
    let us = median(sample(CONN_BUDGET, 1000, 1_000_000, || bytes8_op(&mut conn))) * 1e6;
    finish(conn, p);
    us
}

/// Our 8-byte round trip and the raw socket pair's, interleaved in blocks; prints "ours floor" (us).
fn rtt_floor() -> (f64, f64) {
    let (mut conn, p) = with_child(echo_bytes);
    let (mut raw, raw_child) = UnixStream::pair().expect("socketpair");
    let mut raw_p = Process::new(echo_raw, (Handle::new(raw_child),));
    raw_p.start().expect("start");
    let mut raw_op = || {
        let mut buf = [0u8; 8];
        raw.write_all(b"01234567").expect("write");
        raw.read_exact(&mut buf).expect("read");
    };
    for _ in 0..1000 {
        bytes8_op(&mut conn);
        raw_op();
    }
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < CONN_BUDGET {
        ours.extend(sample(Duration::ZERO, 500, 500, || bytes8_op(&mut conn)));
        floor.extend(sample(Duration::ZERO, 500, 500, &mut raw_op));
    }
    drop(raw);
    assert_eq!(raw_p.join().expect("join"), 0);
    finish(conn, p);
    (median(ours) * 1e6, median(floor) * 1e6)
}

/// Sends batches of `count` messages of `size` bytes, each batch closed by an empty message that
/// the child acknowledges with its count; returns the median seconds per batch.
fn oneway_batches(size: usize, count: u64) -> f64 {
    let (mut conn, p) = with_child(count_sink);
    let msg = vec![0x5au8; size];
    let mut batch = || {
        for _ in 0..count {
            conn.send_bytes(&msg).expect("send");
        }
        conn.send_bytes(&[]).expect("send");
        assert_eq!(conn.recv::<u64>().expect("ack"), count);
    };
    batch();
    let secs = median(sample(CONN_BUDGET, 5, 10_000, batch));
    finish(conn, p);
    secs
}

fn oneway_msg64() -> f64 {
    const COUNT: u64 = 20_000;
    COUNT as f64 / oneway_batches(64, COUNT)
}

fn oneway_mib1() -> f64 {
    const COUNT: u64 = 32;
    (COUNT as f64 * (1 << 20) as f64 / 1e6) / oneway_batches(1 << 20, COUNT)
}

fn transfer_100mb() -> f64 {
    const SIZE: usize = 100_000_000;
    let (mut conn, p) = with_child(len_sink);
    let msg = vec![0x5au8; SIZE];
    let mut op = || {
        conn.send_bytes(&msg).expect("send");
        assert_eq!(conn.recv::<u64>().expect("ack"), SIZE as u64);
    };
    op();
    let secs = median(sample(CONN_BUDGET, 5, 100, op));
    finish(conn, p);
    secs
}

// The sync group.
//
// `bench/python/sync.py` does the same work with CPython's `Lock`, `Value`, `Semaphore` and
// `Event`, children started with `fork`. Ours: the counter's children are forked too (they inherit
// the counter's mapping); the ping-pong children use the default method (the start method does not
// matter once they run).

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

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["start_join", method] => start_join(method.parse().expect("method")),
        ["start_join_default"] => start_join(multiproc::get_start_method()),
        ["fork_waitpid"] => fork_waitpid(),
        ["child_rss"] => child_rss(),
        ["codec"] => return codec(),
        ["rtt_value"] => rtt_value(),
        ["rtt_bytes8"] => rtt_bytes8(),
        ["rtt_floor"] => {
            let (ours, floor) = rtt_floor();
            println!("{ours} {floor}");
            return;
        }
        ["oneway_msg64"] => oneway_msg64(),
        ["oneway_mib1"] => oneway_mib1(),
        ["transfer_100mb"] => transfer_100mb(),
        ["lock_uncontended"] => lock_uncontended(),
        ["counter_2proc"] => counter_2proc(),
        ["semaphore_pingpong"] => semaphore_pingpong(),
        ["event_pingpong"] => event_pingpong(),
        other => {
            eprintln!(
                "usage: mpbench start_join METHOD | start_join_default | fork_waitpid | child_rss | codec | rtt_value \
                 | rtt_bytes8 | rtt_floor | oneway_msg64 | oneway_mib1 | transfer_100mb | lock_uncontended \
                 | counter_2proc | semaphore_pingpong | event_pingpong (got {other:?})"
            );
            std::process::exit(2);
        }
    };
    println!("{value}");
}
