//! The process conformance suite under the fork start method.
//!
//! Forking is only safe from a single-threaded process, so this target has no libtest harness
//! (libtest runs tests on threads). Cases run one after the other on the main thread; `alarm(2)`
//! is the watchdog: a hung case gets `SIGALRM`, which ends the process with a failure.

mod common;

use multiproc::{Context, StartMethod};

fn main() {
    let filter: Option<String> = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let ctx = Context::new(StartMethod::Fork);
    let mut passed = 0;
    macro_rules! run_case {
        ($name:ident) => {
            run_case!(common::suite::$name, $name)
        };
        ($path:path, $name:ident) => {
            if filter.as_deref().map_or(true, |f| stringify!($name).contains(f)) {
                // SAFETY: alarm only schedules SIGALRM, whose default action ends the process.
                unsafe { libc::alarm(60) };
                $path(ctx);
                unsafe { libc::alarm(0) };
                println!("test fork::{} ... ok", stringify!($name));
                passed += 1;
            }
        };
    }
    multiproc_suite!(run_case);
    run_case!(fork_runs_capturing_closures, fork_runs_capturing_closures);
    run_case!(fork_refuses_with_threads, fork_refuses_with_threads);
    println!("\n{passed} passed, 0 failed");
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
