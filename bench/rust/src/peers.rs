//! The peers group: the Rust crates a user would pick instead of this one, and the floors they and
//! we are measured against, each doing the work of one of our metrics (issue 17).
//!
//! - `procspawn`: start + join of a process running a no-op (`procspawn::spawn`), and its
//!   `Pool` of `cpu_count()` workers mapping `x * x` one call per task or one call per chunk.
//! - `ipc-channel`: 8-byte round trip, one-way 64 B and 1 MiB messages (its raw-bytes channel,
//!   `ipc::bytes_channel`, the fastest it offers).
//! - `interprocess`: 8-byte round trip over a local socket stream (raw bytes: it frames nothing).
//! - `floor:handrolled` ([`handrolled`]): the least a pool can do, children re-executed from this
//!   binary over pipes that move raw `u64`s.
//! - `floor:command_reexec`: `std::process::Command` running this binary again to a no-op exit
//!   (what our `spawn` start method does at its core).
//!
//! The children of the channel peers are forked from this (single-threaded) process after the
//! channel exists, as the crates' own tests do; how a child starts does not enter a round trip.

pub(crate) mod handrolled;

use std::io::{Read, Write};
use std::time::Duration;

use interprocess::local_socket::{GenericNamespaced, ListenerOptions, prelude::*};

use crate::{median, sample};

/// How long each peer metric samples (after its warm-up), as the connection group does.
const BUDGET: Duration = Duration::from_millis(1000);

/// The argument that makes this binary exit at once (the `Command` floor's child).
pub(crate) const EXIT_AT_ONCE: &str = "__exit0";

/// procspawn's pool is slow per call (a process-wide channel pair per call): its one-per-task map
/// runs fewer tasks than ours so that a round stays near a second; rates are per task.
const PROCSPAWN_TASKS: u64 = 10_000;

/// Calls of procspawn's pool in flight at once in the one-per-task map.
const PROCSPAWN_WINDOW: usize = 200;

fn noop(_: ()) {}

fn square(x: u64) -> u64 {
    x * x
}

fn square_all(xs: Vec<u64>) -> Vec<u64> {
    xs.into_iter().map(square).collect()
}

fn procspawn_start_join() -> f64 {
    let run = || procspawn::spawn((), noop).join().expect("procspawn join");
    for _ in 0..3 {
        run();
    }
    median(sample(Duration::from_secs(1), 20, 3000, run)) * 1e3
}

/// Tasks per second of procspawn's pool mapping `x * x` over `tasks` values in calls of
/// `chunksize` values (1: one call per value, the function taking and returning a `u64`).
fn procspawn_map(chunksize: usize) -> f64 {
    let pool = procspawn::Pool::new(multiproc::cpu_count()).expect("procspawn pool");
    let tasks = if chunksize == 1 { PROCSPAWN_TASKS } else { crate::pool::TASKS };
    let run = || {
        let values: Vec<u64> = if chunksize == 1 {
            // Each call holds two channels (four descriptors) until joined: a sliding window of
            // calls keeps them within the descriptor limit.
            let mut values = Vec::with_capacity(tasks as usize);
            let mut window = std::collections::VecDeque::with_capacity(PROCSPAWN_WINDOW);
            for x in 0..tasks {
                if window.len() == PROCSPAWN_WINDOW {
                    let h: procspawn::JoinHandle<u64> = window.pop_front().expect("a call");
                    values.push(h.join().expect("procspawn task"));
                }
                window.push_back(pool.spawn(x, square));
            }
            values.extend(window.into_iter().map(|h| h.join().expect("procspawn task")));
            values
        } else {
            let all: Vec<u64> = (0..tasks).collect();
            let handles: Vec<_> = all.chunks(chunksize).map(|c| pool.spawn(c.to_vec(), square_all)).collect();
            handles.into_iter().flat_map(|h| h.join().expect("procspawn task")).collect()
        };
        assert_eq!(values.len() as u64, tasks);
        assert_eq!(values[3], 9);
    };
    run();
    let rate = tasks as f64 / median(sample(Duration::from_secs(1), 2, 50, run));
    pool.shutdown();
    rate
}

/// Forks a child that runs `child` and exits; returns its pid. The caller is single-threaded.
fn fork_child(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the bench process has one thread when it forks; the child runs `child` (plain
    // reads and writes on inherited descriptors) and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child();
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waits for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child failed: {status:#x}");
}

fn ipc_channel_rtt() -> f64 {
    let (to_child, from_parent) = ipc_channel::ipc::bytes_channel().expect("channel");
    let (to_parent, from_child) = ipc_channel::ipc::bytes_channel().expect("channel");
    let pid = fork_child(|| {
        while let Ok(msg) = from_parent.recv() {
            if msg.is_empty() || to_parent.send(&msg).is_err() {
                break;
            }
        }
    });
    let op = || {
        to_child.send(b"01234567").expect("send");
        assert_eq!(from_child.recv().expect("recv").len(), 8);
    };
    for _ in 0..1000 {
        op();
    }
    let us = median(sample(BUDGET, 1000, 1_000_000, op)) * 1e6;
    to_child.send(&[]).expect("stop");
    reap(pid);
    us
}

/// Median seconds per batch of `count` messages of `size` bytes over ipc-channel, each batch
/// ended by a one-byte message the child answers with its count (as our `oneway_batches`).
fn ipc_channel_batches(size: usize, count: u64) -> f64 {
    let (to_child, from_parent) = ipc_channel::ipc::bytes_channel().expect("channel");
    let (to_parent, from_child) = ipc_channel::ipc::bytes_channel().expect("channel");
    let pid = fork_child(|| {
        let mut received = 0u64;
        while let Ok(msg) = from_parent.recv() {
            match msg.len() {
                0 => break,
                1 => {
                    if to_parent.send(&received.to_le_bytes()).is_err() {
                        break;
                    }
                    received = 0;
                }
                _ => received += 1,
            }
        }
    });
    let msg = vec![0x5au8; size];
    let batch = || {
        for _ in 0..count {
            to_child.send(&msg).expect("send");
        }
        to_child.send(b"!").expect("send");
        let ack = from_child.recv().expect("ack");
        assert_eq!(u64::from_le_bytes(ack.try_into().expect("8 bytes")), count);
    };
    batch();
    let secs = median(sample(BUDGET, 5, 10_000, batch));
    to_child.send(&[]).expect("stop");
    reap(pid);
    secs
}

fn interprocess_rtt() -> f64 {
    let name = format!("mpbench-{}.sock", std::process::id());
    let listener = ListenerOptions::new()
        .name(name.as_str().to_ns_name::<GenericNamespaced>().expect("name"))
        .create_sync()
        .expect("listener");
    let pid = fork_child(|| {
        let mut stream = LocalSocketStream::connect(name.as_str().to_ns_name::<GenericNamespaced>().expect("name"))
            .expect("connect");
        let mut buf = [0u8; 8];
        while stream.read_exact(&mut buf).is_ok() {
            if stream.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut stream = listener.accept().expect("accept");
    let mut op = || {
        let mut buf = [0u8; 8];
        stream.write_all(b"01234567").expect("write");
        stream.read_exact(&mut buf).expect("read");
    };
    for _ in 0..1000 {
        op();
    }
    let us = median(sample(BUDGET, 1000, 1_000_000, op)) * 1e6;
    drop(stream); // end of file: the child's loop ends
    reap(pid);
    us
}

/// Start + join of this binary run again by `Command` to an immediate exit.
fn command_reexec() -> f64 {
    let run = || {
        let status = std::process::Command::new("/proc/self/exe").arg(EXIT_AT_ONCE).status().expect("re-exec");
        assert!(status.success());
    };
    for _ in 0..3 {
        run();
    }
    median(sample(Duration::from_secs(1), 20, 3000, run)) * 1e3
}

/// Measures the peer metric `args` names.
pub(crate) fn run(args: &[&str]) -> Option<String> {
    let value = match args {
        ["procspawn_start_join"] => procspawn_start_join(),
        ["procspawn_map", chunksize] => procspawn_map(chunksize.parse().expect("chunksize")),
        ["ipc_channel_rtt"] => ipc_channel_rtt(),
        ["ipc_channel_oneway_msg64"] => {
            const COUNT: u64 = 20_000;
            COUNT as f64 / ipc_channel_batches(64, COUNT)
        }
        ["ipc_channel_oneway_mib1"] => {
            const COUNT: u64 = 32;
            (COUNT as f64 * (1 << 20) as f64 / 1e6) / ipc_channel_batches(1 << 20, COUNT)
        }
        ["interprocess_rtt"] => interprocess_rtt(),
        ["handrolled_map", chunksize] => handrolled::map_rate(chunksize.parse().expect("chunksize")),
        ["handrolled_map_repeat", chunksize, maps] => {
            handrolled::map_repeat(chunksize.parse().expect("chunksize"), maps.parse().expect("maps"))
        }
        ["command_reexec"] => command_reexec(),
        _ => return None,
    };
    Some(value.to_string())
}
