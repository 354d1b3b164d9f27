//! The synchronization conformance cases under the fork start method.
//!
//! Forking is only safe from a single-threaded process, so this target has no libtest harness
//! (libtest runs tests on threads). Cases run one after the other on the main thread; `alarm(2)`
//! is the watchdog: a hung case gets `SIGALRM`, which ends the process with a failure. Cases that
//! keep a thread of the parent alive while they start children cannot run under fork (it refuses,
//! as it must); they are listed in `NEEDS_THREADS` and run under the other methods only.

mod common;

use multiproc::{Context, StartMethod};

/// Cases whose parent runs a thread while starting children.
const NEEDS_THREADS: &[&str] = &["condition_notify_wakes_one_waiter_at_a_time"];

fn main() {
    let filter: Option<String> = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let ctx = Context::new(StartMethod::Fork);
    let mut passed = 0;
    macro_rules! run_case {
        ($name:ident) => {
            let name = stringify!($name);
            if filter.as_deref().is_none_or(|f| name.contains(f)) && !NEEDS_THREADS.contains(&name) {
                // SAFETY: alarm only schedules SIGALRM, whose default action ends the process.
                unsafe { libc::alarm(60) };
                common::sync_suite::$name(ctx);
                // SAFETY: as above; 0 cancels the alarm.
                unsafe { libc::alarm(0) };
                println!("test fork::{name} ... ok");
                passed += 1;
            }
        };
    }
    sync_suite!(run_case);
    println!("\n{passed} passed, 0 failed");
}
