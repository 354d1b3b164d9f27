//! The queue conformance cases under the fork start method (single-threaded harness: see
//! `tests/sync_fork.rs`).

mod common;

use multiproc::{Context, StartMethod};

fn main() {
    let ctx = Context::new(StartMethod::Fork);
    let mut harness = common::ForkHarness::from_args();
    macro_rules! run_case {
        ($name:ident) => {
            harness.run(stringify!($name), || common::queue_suite::$name(ctx));
        };
    }
    queue_suite!(run_case);
    harness.finish();
}
