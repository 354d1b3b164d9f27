//! `mpbench METRIC [ARGS]`: measures one metric of this crate and prints one number (the median of
//! the samples it took). `bench/compare` runs it interleaved with the CPython scripts.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use multiproc::{Handle, Process, StartMethod};

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["start_join", method] => start_join(method.parse().expect("method")),
        ["start_join_default"] => start_join(multiproc::get_start_method()),
        ["fork_waitpid"] => fork_waitpid(),
        ["child_rss"] => child_rss(),
        ["codec"] => return codec(),
        other => {
            eprintln!(
                "usage: mpbench start_join METHOD | start_join_default | fork_waitpid | child_rss | codec (got {other:?})"
            );
            std::process::exit(2);
        }
    };
    println!("{value}");
}
