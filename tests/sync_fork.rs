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
    let ctx = Context::new(StartMethod::Fork);
    let mut harness = common::ForkHarness::from_args();
    macro_rules! run_case {
        ($name:ident) => {
            if !NEEDS_THREADS.contains(&stringify!($name)) {
                harness.run(stringify!($name), || common::sync_suite::$name(ctx));
            }
        };
    }
    sync_suite!(run_case);
    harness.finish();
}
