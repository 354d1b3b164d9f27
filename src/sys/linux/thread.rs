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

/// The start time of thread `tid` (in clock ticks since boot, `/proc/<tid>/stat` field 22), or
/// `None` if no such thread exists.
pub(crate) fn thread_start_time(tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; field 22 is 19 further.
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None; // a zombie holds no lock: it will never release it
    }
    fields.nth(18)?.parse().ok()
}
