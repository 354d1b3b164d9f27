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

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

// A fork server learns once, as it starts, whether the kernel keeps its children's exit codes for
// pidfd holders (Linux 6.15+). Its probe child used to exit at once and was often reaped before
// the server opened its pidfd (27 of 40 starts of a program under load): the answer was then "no" on a kernel
// that can, and every child's exit went through a status pipe and a wake-up of the server on the
// way to its join. Every start must give the kernel's answer.
#[test]
fn fork_server_learns_the_kernels_answer_at_every_start() {
    serial("fork_server_learns_the_kernels_answer_at_every_start", || {
        let expected = kernel_at_least(6, 15);
        let ctx = Context::new(StartMethod::ForkServer);
        // On one CPU (the servers inherit this thread's mask) the probe child more often runs, and
        // exits, before its parent opens its pidfd: the old probe failed in 3 to 28 of these 32
        // starts, six runs out of six.
        let all = rustix::thread::sched_getaffinity(None).unwrap();
        let mut one = rustix::thread::CpuSet::new();
        one.set((0..rustix::thread::CpuSet::MAX_CPU).find(|&cpu| all.is_set(cpu)).unwrap());
        rustix::thread::sched_setaffinity(None, &one).unwrap();
        let mut answers = Vec::new();
        for round in 0..32 {
            restart_fork_server();
            // The first start after the kill finds the server gone and starts a new one.
            let mut p = ctx.process(exit_with, (round,));
            p.start().unwrap();
            assert_eq!(p.join().unwrap(), round);
            answers.push(multiproc::__private::forkserver_reports_exits().unwrap());
        }
        // The next server, started by whichever test needs one, gets the whole mask again.
        rustix::thread::sched_setaffinity(None, &all).unwrap();
        restart_fork_server();
        let wrong = answers.iter().filter(|&&a| a != expected).count();
        assert_eq!(wrong, 0, "{wrong} of 32 fork servers got the kernel's exit-code support wrong (it is {expected})");
    })
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
