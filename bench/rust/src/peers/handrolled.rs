//! `floor:handrolled`: what a pool costs with nothing but the system calls.
//!
//! `cpu_count()` children, each this binary run again (`Command`, [`WORKER`] as its argument),
//! take records `[n][n values]` of little-endian `u64`s on their standard input and write back the
//! `n` squares on their standard output. The parent, one thread with non-blocking pipes and
//! `poll(2)`, keeps each worker fed with up to a window of tasks (so work goes to whoever keeps
//! up, as in a real pool) and copies each answer into place in the result vector. No framing
//! beyond the count, no serialization, no task objects, no error handling past a panic: a floor,
//! not a pool.
//!
//! Like a pool's messages, each record is written with its own `write(2)` on both sides (a chunk
//! of one is one task per system call); reads take whatever the pipe holds.

use std::collections::VecDeque;
use std::io::{Read, Write};

use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{median, sample};

/// The argument that makes this binary a hand-rolled pool's worker.
pub(crate) const WORKER: &str = "__handrolled_worker";

/// Tasks in flight per worker, at least (two chunks when chunks are larger).
const MIN_WINDOW: usize = 2048;

/// The worker: squares every value of every record until end of file.
pub(crate) fn worker() {
    use std::os::fd::FromRawFd;
    // Standard input and output as plain files: std's handles buffer (and stdout flushes at each
    // newline byte), which would split or merge the records' writes.
    // SAFETY: descriptors 0 and 1 are open (the parent's pipes) and used by nothing else here;
    // ManuallyDrop leaves them open.
    let (mut input, mut output) = unsafe {
        (
            std::mem::ManuallyDrop::new(std::fs::File::from_raw_fd(0)),
            std::mem::ManuallyDrop::new(std::fs::File::from_raw_fd(1)),
        )
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut filled, mut answers) = (0usize, Vec::with_capacity(1 << 20));
    loop {
        let read = input.read(&mut buf[filled..]).expect("read tasks");
        if read == 0 {
            return;
        }
        filled += read;
        let mut at = 0;
        while filled - at >= 8 {
            let n = u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes")) as usize;
            let end = at + 8 + 8 * n;
            if end > filled {
                if end - at > buf.len() {
                    buf.resize(end - at, 0);
                }
                break;
            }
            for value in buf[at + 8..end].chunks_exact(8) {
                let x = u64::from_le_bytes(value.try_into().expect("8 bytes"));
                answers.extend_from_slice(&(x * x).to_le_bytes());
            }
            output.write_all(&answers).expect("write answers");
            answers.clear();
            at = end;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
    }
}

struct Worker {
    child: Child,
    to: RawFd,
    from: RawFd,
    /// Encoded tasks not yet written, from `written` on, and where each record ends in it.
    pending: Vec<u8>,
    written: usize,
    record_ends: VecDeque<usize>,
    /// Records sent and not yet answered: (index of the first task, tasks).
    in_flight: VecDeque<(usize, usize)>,
    tasks_in_flight: usize,
    /// Answer bytes of the oldest record received so far.
    received: usize,
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor this process owns (a child's pipe end).
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert!(flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0);
    }
}

impl Worker {
    fn start() -> Worker {
        let child = Command::new("/proc/self/exe")
            .arg(WORKER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let to = child.stdin.as_ref().expect("stdin").as_raw_fd();
        let from = child.stdout.as_ref().expect("stdout").as_raw_fd();
        set_nonblocking(to);
        set_nonblocking(from);
        Worker {
            child,
            to,
            from,
            pending: Vec::new(),
            written: 0,
            record_ends: VecDeque::new(),
            in_flight: VecDeque::new(),
            tasks_in_flight: 0,
            received: 0,
        }
    }

    /// Writes what it can of the pending tasks, one record (or what is left of it) per call.
    fn flush(&mut self) {
        while let Some(&end) = self.record_ends.front() {
            let rest = &self.pending[self.written..end];
            // SAFETY: writes from a live buffer of `rest.len()` bytes.
            let n = unsafe { libc::write(self.to, rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                assert_eq!(std::io::Error::last_os_error().kind(), std::io::ErrorKind::WouldBlock);
                return;
            }
            self.written += n as usize;
            if self.written == end {
                self.record_ends.pop_front();
            }
        }
        self.pending.clear();
        self.written = 0;
    }

    /// Reads the answers that are there into `results`; returns how many tasks they completed.
    fn collect(&mut self, scratch: &mut [u8], results: &mut [u64]) -> usize {
        let mut done = 0;
        loop {
            // SAFETY: reads into a live buffer of `scratch.len()` bytes.
            let n = unsafe { libc::read(self.from, scratch.as_mut_ptr().cast(), scratch.len()) };
            if n < 0 {
                assert_eq!(std::io::Error::last_os_error().kind(), std::io::ErrorKind::WouldBlock);
                return done;
            }
            assert!(n > 0, "a worker ended");
            let mut bytes = &scratch[..n as usize];
            while !bytes.is_empty() {
                // Answers are whole u64s in order; a read may end inside one only at the pipe's
                // whim, so the received count is kept in bytes.
                let &(first, count) = self.in_flight.front().expect("answers for a task in flight");
                let take = bytes.len().min(count * 8 - self.received);
                let into = &mut results[first..first + count];
                // SAFETY: `into` is `count` u64s; the bytes written are within its first
                // `count * 8` bytes (`received + take <= count * 8`).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        into.as_mut_ptr().cast::<u8>().add(self.received),
                        take,
                    )
                };
                self.received += take;
                bytes = &bytes[take..];
                if self.received == count * 8 {
                    self.in_flight.pop_front();
                    self.tasks_in_flight -= count;
                    self.received = 0;
                    done += count;
                }
            }
        }
    }
}

/// A pool of hand-rolled workers.
struct Pool {
    workers: Vec<Worker>,
    scratch: Vec<u8>,
}

impl Pool {
    fn new(n: usize) -> Pool {
        Pool { workers: (0..n).map(|_| Worker::start()).collect(), scratch: vec![0u8; 1 << 20] }
    }

    /// The squares of `values`, in chunks of `chunksize`.
    fn map(&mut self, values: &[u64], chunksize: usize) -> Vec<u64> {
        let window = MIN_WINDOW.max(2 * chunksize);
        let mut results = vec![0u64; values.len()];
        let (mut next, mut done) = (0, 0);
        let mut polls = Vec::with_capacity(2 * self.workers.len());
        while done < values.len() {
            for w in &mut self.workers {
                while next < values.len() && w.tasks_in_flight < window {
                    let count = chunksize.min(values.len() - next);
                    w.pending.extend_from_slice(&(count as u64).to_le_bytes());
                    for v in &values[next..next + count] {
                        w.pending.extend_from_slice(&v.to_le_bytes());
                    }
                    w.record_ends.push_back(w.pending.len());
                    w.in_flight.push_back((next, count));
                    w.tasks_in_flight += count;
                    next += count;
                }
                w.flush();
            }
            polls.clear();
            for w in &self.workers {
                polls.push(libc::pollfd { fd: w.from, events: libc::POLLIN, revents: 0 });
                if !w.pending.is_empty() {
                    polls.push(libc::pollfd { fd: w.to, events: libc::POLLOUT, revents: 0 });
                }
            }
            // SAFETY: a live array of `polls.len()` pollfds.
            let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, -1) };
            assert!(ready > 0, "poll failed");
            for p in polls.iter().filter(|p| p.revents != 0 && p.events == libc::POLLIN) {
                let w = self.workers.iter_mut().find(|w| w.from == p.fd).expect("worker");
                done += w.collect(&mut self.scratch, &mut results);
            }
        }
        results
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for mut w in self.workers.drain(..) {
            drop(w.child.stdin.take()); // end of file: the worker returns
            assert!(w.child.wait().expect("wait").success());
        }
    }
}

/// Tasks per second of the hand-rolled pool mapping `x * x` over the benchmark's values in chunks
/// of `chunksize` (median over about a second, after a warm-up map).
pub(crate) fn map_rate(chunksize: usize) -> f64 {
    let mut pool = Pool::new(multiproc::cpu_count());
    let values: Vec<u64> = (0..crate::pool::TASKS).collect();
    let mut run = || {
        let squares = pool.map(&values, chunksize);
        assert_eq!(squares[values.len() - 1], (values.len() as u64 - 1).pow(2));
    };
    run();
    let secs = median(sample(Duration::from_secs(1), 2, 50, &mut run));
    values.len() as f64 / secs
}

/// `maps` maps after a warm-up one, for a CPU profile (as `pool_map_repeat`); mean seconds per map.
pub(crate) fn map_repeat(chunksize: usize, maps: usize) -> f64 {
    let mut pool = Pool::new(multiproc::cpu_count());
    let values: Vec<u64> = (0..crate::pool::TASKS).collect();
    let mut run = || assert_eq!(pool.map(&values, chunksize).len(), values.len());
    run();
    let start = std::time::Instant::now();
    (0..maps).for_each(|_| run());
    start.elapsed().as_secs_f64() / maps.max(1) as f64
}
