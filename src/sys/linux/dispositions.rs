//! Signal dispositions and masks of this process: what the helper processes (resource tracker,
//! manager servers, fork server) do about the interactive termination signals.

/// Makes the interactive termination signals (`SIGINT`, `SIGTERM`, `SIGHUP`) leave this process
/// alone, as CPython's resource tracker does: it must outlive the program it cleans up after.
pub(crate) fn ignore_termination_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing SIG_IGN is async-signal-safe and has no memory-safety impact.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

/// Makes `SIGINT` (Ctrl-C in the terminal, sent to the whole process group) leave this process
/// alone, as CPython's manager servers (bpo-36368) and fork server do: the program decides when
/// they stop. Returns whether `SIGINT` was ignored already.
pub(crate) fn ignore_interrupt() -> bool {
    // SAFETY: installing SIG_IGN is async-signal-safe and has no memory-safety impact.
    let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    previous == libc::SIG_IGN
}

/// How `SIGINT` stood before [`hold_interrupt`]: what a child gets back ([`release_interrupt`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InterruptBefore {
    ignored: bool,
    blocked: bool,
}

/// For a process that forks children which must end on `SIGINT` while it does not (the fork
/// server): `SIGINT` ignored *and* blocked. A child forked from it inherits both, and a `SIGINT`
/// sent to the child before it calls [`release_interrupt`] stays pending (the kernel discards an
/// ignored signal only when it is not blocked) instead of being lost. Returns how it stood before.
pub(crate) fn hold_interrupt() -> InterruptBefore {
    let ignored = ignore_interrupt();
    let blocked = change_interrupt_mask(libc::SIG_BLOCK);
    InterruptBefore { ignored, blocked }
}

/// In a child of a process that called [`hold_interrupt`]: `SIGINT`'s disposition and mask as
/// they were before it, disposition first, so that a `SIGINT` that arrived since the fork is
/// delivered now (the process ends, unless it was ignored before).
pub(crate) fn release_interrupt(before: InterruptBefore) {
    let action = if before.ignored { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: installing a standard disposition is async-signal-safe and has no memory-safety
    // impact.
    unsafe {
        libc::signal(libc::SIGINT, action);
    }
    if !before.blocked {
        change_interrupt_mask(libc::SIG_UNBLOCK);
    }
}

/// Blocks or unblocks `SIGINT` for the calling thread; returns whether it was blocked before.
fn change_interrupt_mask(how: libc::c_int) -> bool {
    // SAFETY: sigemptyset and sigaddset write only the set they are given; pthread_sigmask reads
    // `set` and writes `old`, both valid for the call. A failure (only for a bad `how`, which the
    // callers never pass) leaves the mask and `old` empty: "not blocked".
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(how, &set, &mut old);
        libc::sigismember(&old, libc::SIGINT) == 1
    }
}
