//! The queue conformance cases under the fork start method (single-threaded harness: see
//! `tests/sync_fork.rs`).

mod common;

use multiproc::{Context, StartMethod};

fn main() {
    let filter: Option<String> = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let ctx = Context::new(StartMethod::Fork);
    let mut passed = 0;
    macro_rules! run_case {
        ($name:ident) => {
            let name = stringify!($name);
            if filter.as_deref().is_none_or(|f| name.contains(f)) {
                // SAFETY: alarm only schedules SIGALRM, whose default action ends the process.
                unsafe { libc::alarm(60) };
                common::queue_suite::$name(ctx);
                // SAFETY: as above; 0 cancels the alarm.
                unsafe { libc::alarm(0) };
                println!("test fork::{name} ... ok");
                passed += 1;
            }
        };
    }
    queue_suite!(run_case);
    println!("\n{passed} passed, 0 failed");
}
