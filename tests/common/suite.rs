//! The process conformance suite (conformance.md section A), written once and run for every start
//! method: `tests/process.rs` instantiates it for forkserver and spawn under libtest,
//! `tests/process_fork.rs` for fork in a single-threaded harness.

use std::io::{Read, Write};
use std::time::Duration;

use multiproc::{Context, Error, Handle, Process, StartMethod, active_children, current_process};

use super::{Outbox, channel, send, sigkill, wait_for_exit_of};

/// Calls `$m!(name)` for every case of the suite.
#[macro_export]
macro_rules! multiproc_suite {
    ($m:ident) => {
        $m!(current_process_in_main);
        $m!(args_are_delivered);
        $m!(child_knows_itself_and_its_parent);
        $m!(lifecycle_before_during_after);
        $m!(join_zero_timeout_returns_at_once);
        $m!(terminate_kill_interrupt_give_negative_signals);
        $m!(exit_codes_follow_the_body);
        $m!(recursion_is_depth_first);
        $m!(grandchild_sees_its_parent_end);
        $m!(sentinel_follows_the_child);
        $m!(close_rules);
        $m!(many_processes_start_and_join);
        $m!(many_processes_terminate_at_once);
        $m!(child_fd_count_does_not_depend_on_siblings);
        $m!(daemon_cannot_start_children);
        $m!(daemon_dies_when_parent_is_killed);
        $m!(daemon_is_terminated_when_parent_exits);
        $m!(non_daemon_is_joined_when_parent_exits);
        $m!(file_handles_arrive_open);
        $m!(run_objects_are_process_bodies);
        $m!(invalid_states_are_errors);
    };
}

fn started(mut p: Process) -> Process {
    p.start().expect("start");
    p
}

// PROC-01
pub fn current_process_in_main(_ctx: Context) {
    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert!(!me.daemon());
    assert!(me.is_alive());
    assert_eq!(me.pid(), std::process::id() as i32);
    assert_eq!(me.exitcode(), None);
    assert_eq!(me.authkey().len(), 32);
    assert!(multiproc::parent_process().is_none());
    assert!(multiproc::cpu_count() >= 1); // PROC-16
}

fn echo_args(out: Outbox, a: u64, s: String, v: Vec<i32>, t: (bool, char)) {
    send(&out, &format!("{a}|{s}|{v:?}|{t:?}"));
}

// PROC-03
pub fn args_are_delivered(ctx: Context) {
    let (inbox, out) = channel();
    let mut p = started(ctx.process(echo_args, (out, 42u64, "text".to_string(), vec![1, -2], (true, 'é'))));
    assert_eq!(inbox.recv(10), "42|text|[1, -2]|(true, 'é')");
    assert_eq!(p.join().unwrap(), 0);
}

fn describe_self(out: Outbox) {
    let me = current_process();
    let parent = multiproc::parent_process().expect("a child has a parent");
    send(
        &out,
        &format!(
            "{}|{}|{}|{}|{}|{}|{}",
            me.name(),
            me.pid() == std::process::id() as i32,
            hex(me.authkey()),
            parent.pid(),
            parent.name(),
            parent.is_alive(),
            multiproc::get_start_method()
        ),
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// PROC-05, PROC-08, CTX-01 (a child reports its start method)
pub fn child_knows_itself_and_its_parent(ctx: Context) {
    let (inbox, out) = channel();
    let mut p = started(ctx.process(describe_self, (out,)).with_name("worker-7"));
    let expected = format!(
        "worker-7|true|{}|{}|MainProcess|true|{}",
        hex(current_process().authkey()),
        std::process::id(),
        ctx.start_method()
    );
    assert_eq!(inbox.recv(10), expected);
    assert_eq!(p.join().unwrap(), 0);
}

fn wait_for_word(inbox: Handle<std::os::unix::net::UnixDatagram>) {
    let mut buf = [0u8; 16];
    let _ = inbox.recv(&mut buf);
}

// PROC-07, PROC-08, PROC-09, PROC-17
pub fn lifecycle_before_during_after(ctx: Context) {
    let (go, go_child) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let mut p = ctx.process(wait_for_word, (Handle::new(go_child),));
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.pid(), None);
    p.start().unwrap();
    let pid = p.pid().expect("pid after start");
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    assert!(active_children().iter().any(|c| c.pid == pid), "started child listed");
    go.send(b"go").unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert!(!active_children().iter().any(|c| c.pid == pid), "joined child not listed");
}

fn sleep_forever() {
    loop {
        std::thread::park();
    }
}

// PROC-11
pub fn join_zero_timeout_returns_at_once(ctx: Context) {
    let mut p = started(ctx.process(sleep_forever, ()));
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    assert_eq!(p.join_timeout(Duration::from_millis(1)).unwrap(), None);
    assert!(p.is_alive());
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
}

// PROC-12/13, PROC-14, PROC-15
pub fn terminate_kill_interrupt_give_negative_signals(ctx: Context) {
    let mut p = started(ctx.process(sleep_forever, ()));
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap(), -15);
    assert!(!p.is_alive());
    assert!(!active_children().iter().any(|c| Some(c.pid) == p.pid()));
    assert!(p.to_string().contains("exitcode=-SIGTERM"), "{p}");
    let mut p = started(ctx.process(sleep_forever, ()));
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
    let mut p = started(ctx.process(sleep_forever, ()));
    p.interrupt().unwrap();
    assert_eq!(p.join().unwrap(), -2);
    // Signalling a process that has ended is a no-op.
    p.terminate().unwrap();
    assert_eq!(p.exitcode(), Some(-2));
}

fn exit_with(code: i32) {
    std::process::exit(code)
}
fn return_code(code: i32) -> i32 {
    code
}
fn fail_with_error() -> Result<(), String> {
    Err("expected failure".into())
}
fn panics() {
    panic!("expected panic in a child");
}

// SUBP-03, SUBP-04
pub fn exit_codes_follow_the_body(ctx: Context) {
    for (mut p, expected) in [
        (ctx.process(exit_with, (8,)), 8),
        (ctx.process(exit_with, (0,)), 0),
        (ctx.process(return_code, (3,)), 3),
        (ctx.process(fail_with_error, ()), 1),
        (ctx.process(panics, ()), 1),
    ] {
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), expected, "{p}");
    }
}

fn recurse(out: Outbox, path: Vec<u32>, depth: u32, method: StartMethod) {
    send(&out, &format!("{path:?}"));
    if depth == 0 {
        return;
    }
    for i in 0..2 {
        let mut next = path.clone();
        next.push(i);
        let mut child = Process::new(recurse, (Handle::new(out.try_clone().unwrap()), next, depth - 1, method))
            .with_start_method(method);
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
    }
}

fn watch_parent(out: Outbox) {
    let parent = multiproc::parent_process().expect("a grandchild has a parent");
    send(&out, &format!("alive={}", parent.is_alive()));
    let ended = parent.join_timeout(Duration::from_secs(20)).is_some();
    send(&out, &format!("ended={ended} alive={}", parent.is_alive()));
}

fn start_watcher_then_wait(out: Outbox, go: Handle<std::os::unix::net::UnixDatagram>, method: StartMethod) {
    let mut grandchild = Process::new(watch_parent, (out,)).with_start_method(method);
    grandchild.start().unwrap();
    let mut buf = [0u8; 8];
    let _ = go.recv(&mut buf); // never sent: this process is terminated while it waits
}

// PROC-06
pub fn grandchild_sees_its_parent_end(ctx: Context) {
    let (inbox, out) = channel();
    let (_go, go_child) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let mut middle = started(ctx.process(start_watcher_then_wait, (out, Handle::new(go_child), ctx.start_method())));
    assert_eq!(inbox.recv(20), "alive=true");
    middle.terminate().unwrap();
    assert_eq!(middle.join().unwrap(), -15);
    assert_eq!(inbox.recv(20), "ended=true alive=false");
}

// PROC-18, CTX-07
pub fn recursion_is_depth_first(ctx: Context) {
    let (inbox, out) = channel();
    let mut p = started(ctx.process(recurse, (out, Vec::<u32>::new(), 2u32, ctx.start_method())));
    let got: Vec<String> = (0..7).map(|_| inbox.recv(20)).collect();
    assert_eq!(got, ["[]", "[0]", "[0, 0]", "[0, 1]", "[1]", "[1, 0]", "[1, 1]"]);
    assert_eq!(p.join().unwrap(), 0);
}

// PROC-19
pub fn sentinel_follows_the_child(ctx: Context) {
    let (go, go_child) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let mut p = ctx.process(wait_for_word, (Handle::new(go_child),));
    assert!(matches!(p.sentinel(), Err(Error::InvalidState(_))));
    p.start().unwrap();
    let sentinel = p.sentinel().unwrap();
    assert_eq!(multiproc::wait(&[&sentinel], Some(Duration::ZERO)).unwrap(), Vec::<usize>::new());
    go.send(b"go").unwrap();
    assert_eq!(multiproc::wait(&[&sentinel], Some(Duration::from_secs(10))).unwrap(), vec![0]);
    assert_eq!(p.join().unwrap(), 0);
}

// PROC-20
pub fn close_rules(ctx: Context) {
    let mut p = started(ctx.process(sleep_forever, ()));
    assert!(matches!(p.close(), Err(Error::InvalidState(m)) if m.contains("still running")));
    p.kill().unwrap();
    p.join().unwrap();
    p.close().unwrap();
    assert!(!p.is_alive());
    assert!(matches!(p.join(), Err(Error::InvalidState(m)) if m.contains("closed")));
    assert!(matches!(p.terminate(), Err(Error::InvalidState(_))));
    p.close().unwrap();
    assert!(p.to_string().contains("closed"));
}

fn noop() {}

// PROC-21
pub fn many_processes_start_and_join(ctx: Context) {
    let n = if ctx.start_method() == StartMethod::Spawn { 30 } else { 100 };
    let mut ps: Vec<Process> = (0..n).map(|_| ctx.process(noop, ())).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
}

// PROC-21
pub fn many_processes_terminate_at_once(ctx: Context) {
    let n = if ctx.start_method() == StartMethod::Spawn { 30 } else { 100 };
    let mut ps: Vec<Process> = (0..n).map(|_| ctx.process(sleep_forever, ())).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &ps {
        p.terminate().unwrap();
    }
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), -15);
    }
}

fn count_fds(out: Outbox) {
    let n = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    send(&out, &n.to_string());
}

// PROC-23 (for fork the child inherits the parent's descriptors by design)
pub fn child_fd_count_does_not_depend_on_siblings(ctx: Context) {
    if ctx.start_method() == StartMethod::Fork {
        return;
    }
    let (inbox, out) = channel();
    let mut first = started(ctx.process(count_fds, (Handle::new(out.try_clone().unwrap()),)));
    let alone = inbox.recv(10);
    first.join().unwrap();
    let mut siblings: Vec<Process> = (0..10).map(|_| started(ctx.process(sleep_forever, ()))).collect();
    let mut last = started(ctx.process(count_fds, (out,)));
    let crowded = inbox.recv(10);
    last.join().unwrap();
    for s in &mut siblings {
        s.kill().unwrap();
        s.join().unwrap();
    }
    assert_eq!(alone, crowded, "a child's descriptor count grew with its siblings");
}

fn try_start_child(out: Outbox) {
    let mut p = Process::new(noop, ());
    let outcome = match p.start() {
        Err(Error::DaemonCannotHaveChildren) => "refused".to_string(),
        other => format!("unexpected: {other:?}"),
    };
    send(&out, &outcome);
}

// A3 / seed 002: a daemon may not start children.
pub fn daemon_cannot_start_children(ctx: Context) {
    let (inbox, out) = channel();
    let mut p = started(ctx.process(try_start_child, (out,)).with_daemon(true));
    assert_eq!(inbox.recv(10), "refused");
    assert_eq!(p.join().unwrap(), 0);
}

fn start_daemon_then_wait(out: Outbox, method: StartMethod) {
    let mut daemon = Process::new(sleep_forever, ()).with_daemon(true).with_start_method(method);
    daemon.start().unwrap();
    send(&out, &daemon.pid().unwrap().to_string());
    sleep_forever();
}

// Daemon children die with their parent, also on SIGKILL.
pub fn daemon_dies_when_parent_is_killed(ctx: Context) {
    let (inbox, out) = channel();
    let mut middle = started(ctx.process(start_daemon_then_wait, (out, ctx.start_method())));
    let daemon_pid: i32 = inbox.recv(10).parse().unwrap();
    sigkill(middle.pid().unwrap());
    assert_eq!(middle.join().unwrap(), -9);
    assert!(wait_for_exit_of(daemon_pid, 10), "daemon {daemon_pid} outlived its killed parent");
}

fn start_daemon_and_return(out: Outbox, method: StartMethod) {
    let mut daemon = Process::new(sleep_forever, ()).with_daemon(true).with_start_method(method);
    daemon.start().unwrap();
    send(&out, &daemon.pid().unwrap().to_string());
}

// Daemon children are terminated when their parent's body returns.
pub fn daemon_is_terminated_when_parent_exits(ctx: Context) {
    let (inbox, out) = channel();
    let mut middle = started(ctx.process(start_daemon_and_return, (out, ctx.start_method())));
    let daemon_pid: i32 = inbox.recv(10).parse().unwrap();
    assert_eq!(middle.join().unwrap(), 0);
    assert!(wait_for_exit_of(daemon_pid, 10), "daemon {daemon_pid} outlived its parent");
}

fn wait_then_report(go: Handle<std::os::unix::net::UnixDatagram>, out: Outbox) {
    let mut buf = [0u8; 16];
    let _ = go.recv(&mut buf);
    send(&out, "grandchild done");
}

fn start_child_and_return(go: Handle<std::os::unix::net::UnixDatagram>, out: Outbox, method: StartMethod) {
    let mut child =
        Process::new(wait_then_report, (go, Handle::new(out.try_clone().unwrap()))).with_start_method(method);
    child.start().unwrap();
    send(&out, "middle returning");
}

// Non-daemon children are joined when their parent's body returns.
pub fn non_daemon_is_joined_when_parent_exits(ctx: Context) {
    let (inbox, out) = channel();
    let (go, go_child) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let mut middle = started(ctx.process(start_child_and_return, (Handle::new(go_child), out, ctx.start_method())));
    assert_eq!(inbox.recv(10), "middle returning");
    // The middle process must still be there, waiting for its child.
    assert_eq!(middle.join_timeout(Duration::from_millis(100)).unwrap(), None);
    go.send(b"go").unwrap();
    assert_eq!(inbox.recv(10), "grandchild done");
    assert_eq!(middle.join().unwrap(), 0);
}

fn append_lines(file: Handle<std::fs::File>, n: u32) {
    let mut file = file.into_inner();
    // One write call per line: `writeln!` on an unbuffered file writes each piece separately, and
    // the children share one file offset, so pieces of different lines could interleave.
    file.write_all(format!("line from child {n}\n").as_bytes()).unwrap();
}

// Seed 002: ten processes append to one file given as an argument.
pub fn file_handles_arrive_open(ctx: Context) {
    let fd = rustix::fs::memfd_create("lines", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    // Appends, as the seed opens its file with "a": a memory file's shared offset is not updated
    // atomically between processes (it is no regular open file), O_APPEND makes each write land
    // at the end.
    rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::APPEND).unwrap();
    let file = std::fs::File::from(fd);
    let mut ps: Vec<Process> =
        (0..10).map(|n| started(ctx.process(append_lines, (Handle::new(file.try_clone().unwrap()), n)))).collect();
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    let mut text = String::new();
    let mut file = file;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).unwrap();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text.lines().count(), 10, "{text}");
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Named {
    name: String,
    out: Outbox,
}

impl multiproc::Run for Named {
    type Output = ();
    fn run(self) {
        send(&self.out, &format!("{} is piaoing", self.name));
    }
}

// A2 / seed 002 MyProcess
pub fn run_objects_are_process_bodies(ctx: Context) {
    let (inbox, out) = channel();
    let mut p = started(ctx.process_from_run(Named { name: "Jedan".into(), out }));
    assert_eq!(inbox.recv(10), "Jedan is piaoing");
    assert_eq!(p.join().unwrap(), 0);
}

// A1 assertions of start()/join()/set_daemon()
pub fn invalid_states_are_errors(ctx: Context) {
    let mut p = ctx.process(noop, ());
    assert!(matches!(p.join(), Err(Error::InvalidState(_))));
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::InvalidState(m)) if m.contains("twice")));
    assert!(matches!(p.set_daemon(true), Err(Error::InvalidState(_))));
    assert_eq!(p.join().unwrap(), 0);
}
