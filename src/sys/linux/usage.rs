//! What the kernel counts about the calling thread's use of the CPU.

/// How many times the calling thread was switched out involuntarily so far (`getrusage(2)`'s
/// `ru_nivcsw` for `RUSAGE_THREAD`): it was runnable, and the scheduler gave its CPU to another
/// task. A rise while a thread spins says that others want the CPUs. 0 if the call fails.
pub(crate) fn involuntary_switches() -> u64 {
    // SAFETY: an all-zero `rusage` (integers and `timeval`s of integers) is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `RUSAGE_THREAD` with a pointer to a valid, writable `rusage`, which the call fills
    // and does not keep.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(usage.ru_nivcsw).unwrap_or(0)
}

/// How many tasks of the whole system are runnable now (running or waiting for a CPU: the fourth
/// field of `/proc/loadavg`, before the slash), or `None` if it cannot be read. A snapshot: one
/// sample says little, several say whether the CPUs have room.
pub(crate) fn runnable_tasks() -> Option<u32> {
    use std::io::Read;
    let mut text = [0u8; 128];
    let mut file = std::fs::File::open("/proc/loadavg").ok()?;
    let n = file.read(&mut text).ok()?;
    let text = std::str::from_utf8(&text[..n]).ok()?;
    let field = text.split_ascii_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}
