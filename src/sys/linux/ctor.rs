//! The start-up hook: a function the C runtime calls before `main` (an `.init_array` entry).
//!
//! A child started with the spawn method is a fresh execution of the parent's binary. Before the
//! user's `main` can run, this hook hands control to the crate's child bootstrap, which runs the
//! child's target and exits; `main` never runs in the child. The same hook turns a fresh execution
//! into the fork server.
//!
//! The hook only reads one environment variable and returns at once when it is absent, so it costs
//! nothing in ordinary processes. [`startup_hook_ran`] lets the crate check, before it starts a
//! child that depends on the hook, that the linker kept it (see `crate::process::bootstrap`).

use std::sync::atomic::{AtomicBool, Ordering};

static HOOK_RAN: AtomicBool = AtomicBool::new(false);

/// Whether the start-up hook ran in this process (either through `.init_array` or through an
/// explicit `multiproc::bootstrap()` call).
pub(crate) fn startup_hook_ran() -> bool {
    HOOK_RAN.load(Ordering::Relaxed)
}

/// Marks the hook as run; returns `true` the first time.
pub(crate) fn mark_hook_ran() -> bool {
    !HOOK_RAN.swap(true, Ordering::Relaxed)
}

extern "C" fn startup_hook() {
    crate::process::bootstrap::on_startup();
}

/// The `.init_array` entry. `#[used]` keeps it in its object file; the crate also refers to it from
/// the code that starts children, so the linker keeps that object file whenever a binary can start
/// children at all.
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static STARTUP_HOOK: extern "C" fn() = startup_hook;

/// Keeps [`STARTUP_HOOK`] referenced from code that is always linked when children are started.
pub(crate) fn keep_startup_hook() {
    std::hint::black_box(&STARTUP_HOOK);
}
