//! Whether the CPUs have room for a spinning thread: a thread that spins takes a CPU, which only
//! pays while no other program wants it.
//!
//! Shared by the waits that spin long (the adaptive spin's probes and wide budgets,
//! [`super::spin`], and the manager's channels, `manager::channel`): each asks
//! [`cpus_have_room`], which samples the system's runnable tasks at most every
//! [`SAMPLE_EVERY`], so the question costs a few loads nearly every time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// How often the system's runnable tasks are sampled (by a thread about to spin).
const SAMPLE_EVERY: Duration = Duration::from_millis(1);

/// Of the last 8 samples, how many may find more runnable tasks than CPUs for a spin to start.
const BUSY_SAMPLES_ALLOWED: u32 = 1;

/// The CPUs this process may run on: its affinity mask, read once per process (one system call;
/// `available_parallelism` would read the cgroup's CPU quota, a dozen system calls, and a quota
/// does not decide whether two threads can run at the same time).
pub(crate) fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(sys::cpus_to_run_on)
}

/// Whether the CPUs have room for a spinning thread, from the last 8 samples of the system's
/// runnable tasks (`/proc/loadavg`), taken at most every [`SAMPLE_EVERY`] by whichever thread
/// asks. A sample is busy when more tasks are runnable than there are CPUs: a spinner and its
/// partner are two of them, so on two CPUs anything more is another program (a build, other
/// clients), which a spin would take a CPU from. Unreadable counts as busy.
pub(crate) fn cpus_have_room() -> bool {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    static LAST_SAMPLE_NS: AtomicU64 = AtomicU64::new(0);
    static BUSY_BITS: AtomicU32 = AtomicU32::new(0);
    let now = EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1;
    let last = LAST_SAMPLE_NS.load(Ordering::Relaxed);
    let due = last == 0 || now.saturating_sub(last) >= SAMPLE_EVERY.as_nanos() as u64;
    if due && LAST_SAMPLE_NS.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        let busy = sys::runnable_tasks().is_none_or(|running| running as usize > cpus());
        let bits = BUSY_BITS.load(Ordering::Relaxed);
        BUSY_BITS.store((bits << 1) | u32::from(busy), Ordering::Relaxed);
    }
    (BUSY_BITS.load(Ordering::Relaxed) & 0xff).count_ones() <= BUSY_SAMPLES_ALLOWED
}
