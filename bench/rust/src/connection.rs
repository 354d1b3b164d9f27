//! The connection group.
//!
//! Every child is started with the default start method (the fork server). The CPython side is
//! `bench/python/connection.py`, doing the same work with `Pipe()` and the `fork` method.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use multiproc::{Connection, Handle, Process};

use crate::{median, sample};

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
    with_child_over(multiproc::pipe, target)
}

/// [`with_child`] over a pair that `pair` makes.
fn with_child_over<F: multiproc::Target<(Connection,)>>(
    pair: fn() -> multiproc::Result<(Connection, Connection)>,
    target: F,
) -> (Connection, Process) {
    let (parent, child) = pair().expect("pipe");
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

/// The 8-byte round trip over a bare socket pair (`socket_pipe`).
fn rtt_socket_pipe() -> f64 {
    let (mut conn, child) = multiproc::socket_pipe().expect("pipe");
    let mut p = Process::new(echo_bytes, (child,));
    p.start().expect("start");
    for _ in 0..1000 {
        bytes8_op(&mut conn);
    }
    let us = median(sample(CONN_BUDGET, 1000, 1_000_000, || bytes8_op(&mut conn))) * 1e6;
    finish(conn, p);
    us
}

/// How many short runs `rtt_runs` makes, and how long each samples.
const SHORT_RUNS: usize = 20;
const SHORT_BUDGET: Duration = Duration::from_millis(100);

/// One short run of the 8-byte round trip (a fresh pipe and child, 200 warm-up round trips, then
/// [`SHORT_BUDGET`] of samples): the median in microseconds.
fn rtt_bytes8_short() -> f64 {
    let (mut conn, p) = with_child(echo_bytes);
    for _ in 0..200 {
        bytes8_op(&mut conn);
    }
    let us = median(sample(SHORT_BUDGET, 200, 1_000_000, || bytes8_op(&mut conn))) * 1e6;
    finish(conn, p);
    us
}

/// No slow mode: [`SHORT_RUNS`] short runs of the 8-byte round trip, each a separate process run
/// one after the other; prints "worst best" of their medians (us). A round trip that stayed slow
/// after load had passed (or from its start) shows as a worst run far above the best.
fn rtt_runs() -> (f64, f64) {
    let medians: Vec<f64> = (0..SHORT_RUNS)
        .map(|_| {
            let out = std::process::Command::new("/proc/self/exe").arg("rtt_bytes8_short").output().expect("run");
            assert!(out.status.success(), "a short run failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("a median")
        })
        .collect();
    let worst = medians.iter().copied().fold(f64::MIN, f64::max);
    let best = medians.iter().copied().fold(f64::MAX, f64::min);
    eprintln!("short runs (us): {medians:.3?}");
    (worst, best)
}

/// Our 8-byte round trip over `pipe` and the raw socket pair's, interleaved in blocks; returns
/// (ours, floor) in microseconds.
fn rtt_against_socketpair(pipe: fn() -> multiproc::Result<(Connection, Connection)>) -> (f64, f64) {
    let (mut conn, child) = pipe().expect("pipe");
    let mut p = Process::new(echo_bytes, (child,));
    p.start().expect("start");
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
    transfer_100mb_over(multiproc::pipe)
}

/// One 100 MB message parent → child and the child's 8-byte answer, over a pair `pair` makes.
fn transfer_100mb_over(pair: fn() -> multiproc::Result<(Connection, Connection)>) -> f64 {
    const SIZE: usize = 100_000_000;
    let (mut conn, p) = with_child_over(pair, len_sink);
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

/// Measures the connection metric `args` names.
pub(crate) fn run(args: &[&str]) -> Option<String> {
    let value = match args {
        ["rtt_value"] => rtt_value(),
        ["rtt_bytes8"] => rtt_bytes8(),
        ["rtt_floor"] => {
            let (ours, floor) = rtt_against_socketpair(multiproc::pipe);
            return Some(format!("{ours} {floor}"));
        }
        ["rtt_socket_pipe_floor"] => {
            let (ours, floor) = rtt_against_socketpair(multiproc::socket_pipe);
            return Some(format!("{ours} {floor}"));
        }
        ["rtt_bytes8_short"] => rtt_bytes8_short(),
        ["rtt_socket_pipe"] => rtt_socket_pipe(),
        ["rtt_runs"] => {
            let (worst, best) = rtt_runs();
            return Some(format!("{worst} {best}"));
        }
        ["oneway_msg64"] => oneway_msg64(),
        ["oneway_mib1"] => oneway_mib1(),
        ["transfer_100mb"] => transfer_100mb(),
        ["transfer_100mb_socket_pipe"] => transfer_100mb_over(multiproc::socket_pipe),
        _ => return None,
    };
    Some(value.to_string())
}
