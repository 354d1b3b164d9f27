//! Start methods, contexts and launch failures (conformance.md A4, PROC-27). These cases change
//! process-wide state (the default method, a test hook, the fork server), so they take a lock.

mod common;

use std::sync::Mutex;

use multiproc::{Context, Error, Process, StartMethod, get_all_start_methods, get_context, set_start_method};

static GLOBAL: Mutex<()> = Mutex::new(());

fn serial<R>(name: &str, body: impl FnOnce() -> R) -> R {
    let _guard = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    common::watchdog(name, 60, body)
}

fn noop() {}

fn report_method(out: common::Outbox) {
    common::send(&out, multiproc::get_start_method().as_str());
}

// CTX-01, CTX-04
#[test]
fn contexts_name_their_methods() {
    serial("contexts_name_their_methods", || {
        let all = get_all_start_methods();
        assert_eq!(all, [StartMethod::ForkServer, StartMethod::Fork, StartMethod::Spawn]);
        for method in all {
            let ctx = get_context(method.as_str()).unwrap();
            assert_eq!(ctx.start_method(), method);
            assert_eq!(method.to_string().parse::<StartMethod>().unwrap(), method);
        }
        assert!(matches!(get_context("thread"), Err(Error::UnknownStartMethod(m)) if m == "thread"));
    })
}

// CTX-03
#[test]
fn set_start_method_fixes_the_default() {
    serial("set_start_method_fixes_the_default", || {
        set_start_method(None, true).unwrap();
        assert_eq!(multiproc::peek_start_method(), None);
        set_start_method(Some(StartMethod::Spawn), false).unwrap();
        assert!(matches!(set_start_method(Some(StartMethod::Fork), false), Err(Error::ContextAlreadySet)));
        assert_eq!(multiproc::get_start_method(), StartMethod::Spawn);
        // A child started with the default method reports it as its own default.
        let (inbox, out) = common::channel();
        let mut p = Process::new(report_method, (out,));
        p.start().unwrap();
        assert_eq!(inbox.recv(10), "spawn");
        assert_eq!(p.join().unwrap(), 0);
        set_start_method(None, true).unwrap();
        assert_eq!(multiproc::get_start_method(), StartMethod::ForkServer);
    })
}

// A different binary in the child is refused with a clear error, never run.
#[test]
fn binary_mismatch_is_refused() {
    serial("binary_mismatch_is_refused", || {
        multiproc::__private::test_hooks::simulate_binary_mismatch(true);
        let mut p = Context::new(StartMethod::Spawn).process(noop, ());
        let err = p.start().unwrap_err();
        multiproc::__private::test_hooks::simulate_binary_mismatch(false);
        assert!(matches!(err, Error::BinaryMismatch { .. }), "{err}");
        assert!(err.to_string().contains("same binary"), "{err}");
        // And the next start works.
        let mut p = Context::new(StartMethod::Spawn).process(noop, ());
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
    })
}

fn wait_for_word(go: multiproc::Handle<std::os::unix::net::UnixDatagram>) {
    let mut buf = [0u8; 8];
    let _ = go.recv(&mut buf);
}

// PROC-27: a killed fork server is restarted; a child in flight reports 255 or its real code.
#[test]
fn killed_fork_server_is_restarted() {
    serial("killed_fork_server_is_restarted", || {
        let ctx = Context::new(StartMethod::ForkServer);
        let (go, go_child) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let mut in_flight = ctx.process(wait_for_word, (multiproc::Handle::new(go_child),));
        in_flight.start().unwrap();
        let server = multiproc::__private::forkserver_pid().unwrap();
        common::sigkill(server);
        assert!(common::wait_for_exit_of(server, 10));
        go.send(b"go").unwrap();
        let code = in_flight.join().unwrap();
        assert!(code == 0 || code == 255, "in-flight child ended with {code}");
        let mut after = ctx.process(noop, ());
        after.start().unwrap();
        assert_eq!(after.join().unwrap(), 0);
        assert_ne!(multiproc::__private::forkserver_pid().unwrap(), server);
    })
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

/// Kills the running fork server, so that the next start begins a new one.
fn restart_fork_server() {
    let server = multiproc::__private::forkserver_pid().unwrap();
    common::sigkill(server);
    assert!(common::wait_for_exit_of(server, 10));
}

// Kernels before 6.15 cannot keep exit codes for pidfd holders; there the fork server reaps its
// children and reports each code on a status pipe. That path, forced: exit codes, signals, and a
// child started after its siblings ended.
#[test]
fn fork_server_reports_exit_codes_on_status_pipes() {
    serial("fork_server_reports_exit_codes_on_status_pipes", || {
        multiproc::__private::test_hooks::force_status_pipes(true);
        restart_fork_server();
        let ctx = Context::new(StartMethod::ForkServer);
        let codes: Vec<i32> = [0, 3, 42]
            .into_iter()
            .map(|code| {
                let mut p = ctx.process(exit_with, (code,));
                p.start().unwrap();
                p.join().unwrap()
            })
            .collect();
        let (_go, go_child) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let mut hung = ctx.process(wait_for_word, (multiproc::Handle::new(go_child),));
        hung.start().unwrap();
        hung.kill().unwrap();
        let killed = hung.join().unwrap();
        multiproc::__private::test_hooks::force_status_pipes(false);
        restart_fork_server();
        assert_eq!(codes, [0, 3, 42]);
        assert_eq!(killed, -9);
    })
}

// PROC-27 (SIGINT): a fork server sent SIGINT (as a Ctrl-C to the process group would) ignores it,
// as CPython's does: processes keep starting from the same server, a child in flight is untouched
// (before, the server died and a spare it had forked could be orphaned: its exit code then read 255).
// That its children still end on SIGINT is `process::forkserver::terminate_kill_interrupt_give_negative_signals`.
#[test]
fn interrupted_fork_server_still_starts_processes() {
    serial("interrupted_fork_server_still_starts_processes", || {
        let ctx = Context::new(StartMethod::ForkServer);
        let (go, go_child) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let mut in_flight = ctx.process(wait_for_word, (multiproc::Handle::new(go_child),));
        in_flight.start().unwrap();
        let server = multiproc::__private::forkserver_pid().unwrap();
        let pid = rustix::process::Pid::from_raw(server).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        for _ in 0..3 {
            let mut after = ctx.process(noop, ());
            after.start().unwrap();
            assert_eq!(after.join().unwrap(), 0);
        }
        assert_eq!(multiproc::__private::forkserver_pid().unwrap(), server, "the fork server was replaced");
        go.send(b"go").unwrap();
        assert_eq!(in_flight.join().unwrap(), 0);
    })
}
