//! Thread identity for locks shared between processes: the kernel thread id (unique in the system
//! while the thread lives) and its start time (which tells a recycled id from the original).

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped in every child right after `fork`, so that cached thread ids are read again.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static WATCH_FORKS: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    /// (fork generation, thread id, start time) of this thread, once asked for.
    static CACHED: Cell<(u64, u32, u64)> = const { Cell::new((u64::MAX, 0, 0)) };
}

/// The calling thread's kernel id (`gettid(2)`) and start time, cached per thread and read again
/// after `fork`.
pub(crate) fn current_thread() -> (u32, u64) {
    WATCH_FORKS.call_once(|| {
        // SAFETY: registers a plain C function that only bumps an atomic (async-signal-safe),
        // which is all a handler that runs in a freshly forked child may do.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    CACHED.with(|cached| {
        let (seen, tid, start) = cached.get();
        if seen == generation {
            return (tid, start);
        }
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let start = thread_start_time(tid).unwrap_or(0);
        cached.set((generation, tid, start));
        (tid, start)
    })
}

/// What `/proc` says of a thread: gone, alive since a start time, or nothing certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadLife {
    /// No such thread, or a zombie (it runs no more code and releases nothing).
    Gone,
    /// The thread lives; it started at this time (clock ticks since boot, `/proc/<tid>/stat`
    /// field 22), which tells it from an earlier thread with the same id.
    Alive(u64),
    /// `/proc` could not be read (not mounted, out of descriptors, ...): nothing is known.
    Unknown,
}

/// Whether thread `tid` lives, and since when.
pub(crate) fn thread_life(tid: u32) -> ThreadLife {
    let stat = match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ThreadLife::Gone,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return ThreadLife::Gone,
        Err(_) => return ThreadLife::Unknown,
    };
    // The command name (field 2) is in parentheses and may contain spaces: skip past its end.
    let Some(close) = stat.rfind(')') else { return ThreadLife::Unknown };
    // Field 3 (state) is the first after the name; field 22 is 19 further.
    let mut fields = stat[close + 1..].split_whitespace();
    match fields.next() {
        Some("Z" | "X") => ThreadLife::Gone,
        Some(_) => fields.nth(18).and_then(|f| f.parse().ok()).map_or(ThreadLife::Unknown, ThreadLife::Alive),
        None => ThreadLife::Unknown,
    }
}

/// Whether thread `tid` certainly no longer exists: a cheap test (one `kill(tid, 0)`), for checks
/// that run often. A zombie, or a later thread with the same id, counts as existing.
pub(crate) fn thread_gone(tid: u32) -> bool {
    match i32::try_from(tid).ok().and_then(rustix::process::Pid::from_raw) {
        Some(pid) => rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH),
        None => false,
    }
}

/// The start time of thread `tid` (see [`ThreadLife::Alive`]), or `None` if it is gone or unknown.
fn thread_start_time(tid: u32) -> Option<u64> {
    match thread_life(tid) {
        ThreadLife::Alive(start) => Some(start),
        ThreadLife::Gone | ThreadLife::Unknown => None,
    }
}

/// How many CPUs the calling thread may run on (its affinity mask; at least 1). One system call,
/// no allocation: unlike `std::thread::available_parallelism`, it does not read the cgroup's CPU
/// quota, which does not decide whether two processes can run at the same time.
pub(crate) fn cpus_to_run_on() -> usize {
    rustix::thread::sched_getaffinity(None).map_or(1, |set| set.count().max(1) as usize)
}
