//! A waiting side costs no CPU while its partner is slow (`src/sync/spin.rs`): waits spin only
//! while spinning pays, and a partner that answers late turns them into sleeps.
//!
//! CPU time is the waiting thread's own (`getrusage(RUSAGE_THREAD)`: user and system time), not
//! wall time: these tests hold on a loaded machine. The bound is generous, 50 µs per wait on
//! average in a release build, 100 in a debug one (the system calls of a sleep and a wake-up take
//! 8-15 µs of CPU on the 2-vCPU VM of `bench/README.md`; a wait spins 20 µs at most before its
//! budget is gone, a probe 160 µs once per 16 to 256 sleeping waits), while the partner takes a
//! millisecond each time: a waiter that spun until its partner answered would spend 10 to 20 times
//! the bound.

mod common;

use std::time::Duration;

use multiproc::{Connection, Process, Semaphore, pipe};

const WATCHDOG_SECS: u64 = 60;

/// How long the partner takes to answer each time.
const PARTNER_DELAY: Duration = Duration::from_millis(1);

/// Waits per test.
const WAITS: u32 = 200;

/// The most CPU a wait may cost on average. A debug build's own code (and a loaded machine's
/// system calls) take a good part of that: 5-17 ms for the 200 waits of the pipe test under a
/// load average of 3.5 on the 2-vCPU VM, before and after the spin's probes were lengthened. Either
/// bound is far below a waiter that spins until its partner answers (1 ms a wait).
const CPU_PER_WAIT: Duration = Duration::from_micros(if cfg!(debug_assertions) { 100 } else { 50 });

/// CPU time (user + system) of the calling thread so far.
fn thread_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid buffer for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Runs `waits` and checks the CPU it cost this thread.
fn assert_cheap_waits(what: &str, waits: impl FnOnce()) {
    let before = thread_cpu_time();
    waits();
    let spent = thread_cpu_time() - before;
    eprintln!("{what}: {spent:?} of CPU for {WAITS} waits of {PARTNER_DELAY:?}");
    assert!(spent < CPU_PER_WAIT * WAITS, "{what}: {spent:?} of CPU for {WAITS} waits on a slow partner");
}

/// Answers each message after [`PARTNER_DELAY`], until end of file.
fn slow_echo(mut conn: Connection) {
    while let Ok(message) = conn.recv_bytes() {
        std::thread::sleep(PARTNER_DELAY);
        if conn.send_bytes(&message).is_err() {
            break;
        }
    }
}

#[test]
fn a_pipe_reader_waiting_on_a_slow_partner_costs_no_cpu() {
    common::watchdog("pipe reader, slow partner", WATCHDOG_SECS, || {
        let (mut conn, child_end) = pipe().unwrap();
        let mut child = Process::new(slow_echo, (child_end,));
        child.start().unwrap();
        conn.send_bytes(b"warm").unwrap();
        conn.recv_bytes().unwrap();
        assert_cheap_waits("pipe", || {
            for _ in 0..WAITS {
                conn.send_bytes(b"01234567").unwrap();
                assert_eq!(conn.recv_bytes().unwrap(), b"01234567");
            }
        });
        drop(conn);
        assert_eq!(child.join().unwrap(), 0);
    });
}

#[test]
fn a_socket_pipe_reader_waiting_on_a_slow_partner_costs_no_cpu() {
    common::watchdog("socket pipe reader, slow partner", WATCHDOG_SECS, || {
        let (mut conn, child_end) = multiproc::socket_pipe().unwrap();
        let mut child = Process::new(slow_echo, (child_end,));
        child.start().unwrap();
        assert_cheap_waits("socket pipe", || {
            for _ in 0..WAITS {
                conn.send_bytes(b"01234567").unwrap();
                assert_eq!(conn.recv_bytes().unwrap(), b"01234567");
            }
        });
        drop(conn);
        assert_eq!(child.join().unwrap(), 0);
    });
}

/// Releases `given` after [`PARTNER_DELAY`] each time it takes `asked`, `WAITS` times.
fn slow_releaser(asked: Semaphore, given: Semaphore) {
    for _ in 0..WAITS {
        asked.acquire_unguarded(None);
        std::thread::sleep(PARTNER_DELAY);
        given.release();
    }
}

#[test]
fn a_semaphore_waiter_on_a_slow_partner_costs_no_cpu() {
    common::watchdog("semaphore waiter, slow partner", WATCHDOG_SECS, || {
        let (asked, given) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
        let mut child = Process::new(slow_releaser, (asked.clone(), given.clone()));
        child.start().unwrap();
        assert_cheap_waits("semaphore", || {
            for _ in 0..WAITS {
                asked.release();
                assert!(given.acquire_unguarded(None));
            }
        });
        assert_eq!(child.join().unwrap(), 0);
    });
}
