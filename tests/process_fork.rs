//! The process conformance suite under the fork start method.
//!
//! Forking is only safe from a single-threaded process, so this target has no libtest harness
//! (libtest runs tests on threads). Cases run one after the other on the main thread; `alarm(2)`
//! is the watchdog: a hung case gets `SIGALRM`, which ends the process with a failure.

mod common;

use multiproc::{Context, StartMethod};

fn main() {
    let ctx = Context::new(StartMethod::Fork);
    let mut harness = common::ForkHarness::from_args();
    macro_rules! run_case {
        ($name:ident) => {
            harness.run(stringify!($name), || common::suite::$name(ctx));
        };
    }
    multiproc_suite!(run_case);
    harness.run("fork_runs_capturing_closures", || fork_runs_capturing_closures(ctx));
    harness.run("fork_refuses_with_threads", || fork_refuses_with_threads(ctx));
    harness.run("fork_drops_the_closure_once_started", || fork_drops_the_closure_once_started(ctx));
    harness.finish();
}

fn fork_runs_capturing_closures(_ctx: Context) {
    let (inbox, out) = common::channel();
    let captured = vec![1, 2, 3];
    let mut p = multiproc::Process::fork(move || common::send(&out, &format!("{captured:?}")));
    p.start().unwrap();
    assert_eq!(inbox.recv(10), "[1, 2, 3]");
    assert_eq!(p.join().unwrap(), 0);
}

fn fork_refuses_with_threads(_ctx: Context) {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || stopped.recv());
    let mut p = multiproc::Process::fork(|| ());
    let err = p.start().unwrap_err();
    assert!(matches!(err, multiproc::Error::ForkWithThreads { threads: 2 }), "{err}");
    stop.send(()).unwrap();
    thread.join().unwrap().unwrap();
}

// PROC-22 for closures: once started, the parent no longer holds the closure (what it captured is
// released there), and the child still ran it.
fn fork_drops_the_closure_once_started(_ctx: Context) {
    let (inbox, out) = common::channel();
    let captured = std::sync::Arc::new(String::from("captured"));
    let in_closure = captured.clone();
    let mut p = multiproc::Process::fork(move || common::send(&out, &in_closure));
    assert_eq!(std::sync::Arc::strong_count(&captured), 2);
    p.start().unwrap();
    assert_eq!(std::sync::Arc::strong_count(&captured), 1, "the started process still holds its closure");
    assert_eq!(inbox.recv(10), "captured");
    assert_eq!(p.join().unwrap(), 0);
}
