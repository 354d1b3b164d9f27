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
        $m!(daemon_flag_and_main_thread_are_the_childs_own);
        $m!(children_work_with_standard_streams_closed);
        $m!(panics_and_errors_are_reported_on_the_childs_stderr);
        $m!(buffered_output_is_not_duplicated_by_a_child);
        $m!(high_descriptors_reach_only_forked_children);
        $m!(join_completes_despite_handled_signals);
        $m!(values_owned_by_the_target_are_dropped_when_it_ends);
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
    if interrupt_ignored_here() {
        // Run from a background job of a non-interactive shell (`cmd &`, nohup): SIGINT is
        // ignored here, and a child inherits that, as CPython's children do (a fork server keeps
        // what it started with for its children). The interrupt leaves the child running.
        assert_eq!(p.join_timeout(Duration::from_millis(200)).unwrap(), None, "an ignored SIGINT ended the child");
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -9);
        return;
    }
    assert_eq!(p.join().unwrap(), -2);
    // Signalling a process that has ended is a no-op.
    p.terminate().unwrap();
    assert_eq!(p.exitcode(), Some(-2));
}

/// Whether this process ignores SIGINT (inherited from the shell that started it).
fn interrupt_ignored_here() -> bool {
    // SAFETY: a null new action only reads the current one into `old`, a zeroed (valid) sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
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
        send(&self.out, current_process().name());
    }
}

// A2 / seed 002 MyProcess; a `Run` type's process is named after the type, as CPython names an
// instance of a `Process` subclass (`Named-3`).
pub fn run_objects_are_process_bodies(ctx: Context) {
    let (inbox, out) = channel();
    let mut p = started(ctx.process_from_run(Named { name: "Jedan".into(), out }));
    assert_eq!(inbox.recv(10), "Jedan is piaoing");
    let name = p.name().to_string();
    assert!(
        name.starts_with("Named-") && name["Named-".len()..].split(':').all(|n| n.parse::<u32>().is_ok()),
        "{name}"
    );
    assert_eq!(inbox.recv(10), name, "the child knows itself by the same name");
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

fn report_daemon_and_thread(out: Outbox) {
    send(&out, &format!("{} {}", current_process().daemon(), rustix::thread::gettid().as_raw_nonzero()));
}

// PROC-04, PROC-10: `daemon` defaults to the creator's flag (the main process is no daemon),
// `with_daemon(true)` reaches the child; a child's main thread is its own (its thread id is its
// pid, not the parent's thread's).
pub fn daemon_flag_and_main_thread_are_the_childs_own(ctx: Context) {
    let (inbox, out) = channel();
    let p = ctx.process(report_daemon_and_thread, (Handle::new(out.try_clone().unwrap()),));
    assert_eq!(p.daemon(), current_process().daemon());
    let mut p = started(p);
    let pid = p.pid().unwrap();
    assert_eq!(inbox.recv(10), format!("false {pid}"));
    assert_ne!(pid, rustix::thread::gettid().as_raw_nonzero().get());
    assert_eq!(p.join().unwrap(), 0);
    let mut d = started(ctx.process(report_daemon_and_thread, (out,)).with_daemon(true));
    assert!(d.daemon());
    assert_eq!(inbox.recv(10), format!("true {}", d.pid().unwrap()));
    assert_eq!(d.join().unwrap(), 0);
}

/// Closes standard input, output and error of this process.
fn close_standard_streams(which: &[i32]) {
    for &fd in which {
        // SAFETY: closes a descriptor number this test owns by convention (stdio); nothing in this
        // process keeps an owned handle to it, and Rust's stdout/stderr treat EBADF as success.
        unsafe { libc::close(fd) };
    }
}

fn print_with_closed_output(out: Outbox) {
    close_standard_streams(&[1, 2]);
    println!("printed to a closed stdout");
    eprintln!("printed to a closed stderr");
    send(&out, "grandchild ran");
}

fn start_with_closed_streams(out: Outbox, method: StartMethod) {
    close_standard_streams(&[0, 1, 2]);
    let mut child =
        Process::new(print_with_closed_output, (Handle::new(out.try_clone().unwrap()),)).with_start_method(method);
    let outcome = match child.start().and_then(|()| child.join()) {
        Ok(code) => format!("grandchild exit {code}"),
        Err(e) => format!("failed: {e}"),
    };
    send(&out, &outcome);
}

// PROC-25, PROC-26: a process whose standard streams are closed starts children (new descriptors
// then take the numbers 0-2), and a child that closes its own output and still prints exits 0.
pub fn children_work_with_standard_streams_closed(ctx: Context) {
    let (inbox, out) = channel();
    let mut middle = started(ctx.process(start_with_closed_streams, (out, ctx.start_method())));
    assert_eq!(inbox.recv(20), "grandchild ran");
    assert_eq!(inbox.recv(20), "grandchild exit 0");
    assert_eq!(middle.join().unwrap(), 0);
}

/// A memory file to stand in for a standard stream.
fn memory_file(name: &str) -> std::fs::File {
    std::fs::File::from(rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC).unwrap())
}

fn read_all(mut file: std::fs::File) -> String {
    let mut text = String::new();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).unwrap();
    file.read_to_string(&mut text).unwrap();
    text
}

fn capture_stderr_of_failing_children(out: Outbox, method: StartMethod) {
    let stderr = memory_file("stderr");
    rustix::stdio::dup2_stderr(&stderr).unwrap();
    let mut codes = Vec::new();
    for mut child in
        [Process::new(panics, ()).with_name("panicker"), Process::new(fail_with_error, ()).with_name("failer")]
    {
        child = child.with_start_method(method);
        codes.push(child.start().and_then(|()| child.join()).map_err(|e| e.to_string()));
    }
    send(&out, &format!("{codes:?}\n{}", read_all(stderr)));
}

// SUBP-02, SUBP-03 (Rust forms): a panicking child prints its panic message under a
// `Process <name>:` header on its stderr, a body returning `Err` prints the error; both exit 1.
pub fn panics_and_errors_are_reported_on_the_childs_stderr(ctx: Context) {
    let (inbox, out) = channel();
    let mut middle = started(ctx.process(capture_stderr_of_failing_children, (out, ctx.start_method())));
    let report = inbox.recv(20);
    let (codes, stderr) = report.split_once('\n').unwrap();
    assert_eq!(codes, "[Ok(1), Ok(1)]", "{report}");
    assert!(stderr.contains("Process panicker:") && stderr.contains("expected panic in a child"), "{stderr}");
    assert!(stderr.contains("Error: \"expected failure\""), "{stderr}");
    assert_eq!(middle.join().unwrap(), 0);
}

fn buffer_then_start_child(out: Outbox, method: StartMethod) {
    let captured = memory_file("stdout");
    rustix::stdio::dup2_stdout(&captured).unwrap();
    print!("stdout;"); // no newline: stays in the line buffer
    let mut file = std::io::BufWriter::new(captured.try_clone().unwrap());
    file.write_all(b"file;").unwrap(); // stays in the BufWriter
    let mut child = Process::new(noop, ()).with_start_method(method);
    let code = child.start().and_then(|()| child.join()).map_err(|e| e.to_string());
    std::io::stdout().flush().unwrap();
    drop(file);
    send(&out, &format!("{code:?} {}", read_all(captured)));
}

// MISC-05: data buffered in this process (stdout's line buffer, a BufWriter) is written once, by
// this process: a child, also a forked one, does not write its copy.
pub fn buffered_output_is_not_duplicated_by_a_child(ctx: Context) {
    let (inbox, out) = channel();
    let mut middle = started(ctx.process(buffer_then_start_child, (out, ctx.start_method())));
    assert_eq!(inbox.recv(20), "Ok(0) stdout;file;");
    assert_eq!(middle.join().unwrap(), 0);
}

fn probe_descriptor(out: Outbox, fd: i32) {
    // SAFETY: F_GETFD only reads the flags of whatever `fd` is (or fails with EBADF).
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    send(&out, if open { "open" } else { "closed" });
}

// MISC-08: a descriptor of the parent at a high number, even without close-on-exec, does not reach
// a spawned or fork-server child (which get only what their arguments carry); a forked child has it.
pub fn high_descriptors_reach_only_forked_children(ctx: Context) {
    let (socket, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
    // SAFETY: F_DUPFD makes a new descriptor at the lowest free number from 900 up (never one in
    // use by another test's thread), without close-on-exec; it is closed below.
    let high = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&socket), libc::F_DUPFD, 900) };
    assert!(high >= 900, "F_DUPFD: {}", std::io::Error::last_os_error());
    let (inbox, out) = channel();
    let mut p = started(ctx.process(probe_descriptor, (out, high)));
    let seen = inbox.recv(10);
    // SAFETY: closes the duplicate made above, which nothing else owns.
    unsafe { libc::close(high) };
    assert_eq!(p.join().unwrap(), 0);
    let expected = if ctx.start_method() == StartMethod::Fork { "open" } else { "closed" };
    assert_eq!(seen, expected, "descriptor {high} in a {} child", ctx.start_method());
}

static SIGNALS_HANDLED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS_HANDLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

fn join_under_signals(out: Outbox, go: Handle<std::os::unix::net::UnixDatagram>, method: StartMethod, expected: u32) {
    // SAFETY: `action` starts zeroed (a valid sigaction); its handler only touches an atomic, which
    // is async-signal-safe; no SA_RESTART, so a blocked system call returns EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()), 0);
    }
    let mut child = Process::new(wait_for_word, (go,)).with_start_method(method);
    child.start().unwrap();
    send(&out, "joining");
    let outcome = child.join().map_err(|e| e.to_string());
    // A signal may have gone to another thread of this process: give its handler time to count
    // (bounded; the test then reports how many it saw).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while SIGNALS_HANDLED.load(std::sync::atomic::Ordering::SeqCst) < expected && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    send(&out, &format!("{outcome:?} after {} signals", SIGNALS_HANDLED.load(std::sync::atomic::Ordering::SeqCst)));
}

// MISC-09: `join` completes, with the child's exit code, although handled signals (SIGUSR1, no
// SA_RESTART) interrupt it while it waits.
pub fn join_completes_despite_handled_signals(ctx: Context) {
    let (inbox, out) = channel();
    let (go, go_child) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let mut middle = started(ctx.process(join_under_signals, (out, Handle::new(go_child), ctx.start_method(), 3u32)));
    assert_eq!(inbox.recv(20), "joining");
    let pid = middle.pid().unwrap();
    let target = rustix::process::Pid::from_raw(pid).unwrap();
    for _ in 0..3 {
        // Asleep in join (the kill wakes it; asleep again means it handled the signal and waits).
        super::sync_suite::wait_until_asleep(pid);
        rustix::process::kill_process(target, rustix::process::Signal::USR1).unwrap();
    }
    super::sync_suite::wait_until_asleep(pid);
    go.send(b"go").unwrap();
    assert_eq!(inbox.recv(20), "Ok(0) after 3 signals");
    assert_eq!(middle.join().unwrap(), 0);
}

/// Reports its drop, with the pid of the process it is dropped in.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReportsDrop(Outbox);

impl Drop for ReportsDrop {
    fn drop(&mut self) {
        let _ = self.0.send(format!("dropped in {}", std::process::id()).as_bytes());
    }
}

fn keep_and_return(value: ReportsDrop) {
    send(&value.0, "ran");
}

fn keep_and_panic(_value: ReportsDrop) {
    panic!("expected panic in a child holding a value");
}

// MISC-10 (the Rust form of exit handlers: destructors), PROC-22: the parent's copy of the arguments
// is dropped by `Process::new` (the process keeps only their encoding); in the child, the values the
// target owns are dropped when it returns, and while a panic unwinds.
pub fn values_owned_by_the_target_are_dropped_when_it_ends(ctx: Context) {
    let (inbox, out) = channel();
    let me = format!("dropped in {}", std::process::id());
    let p = ctx.process(keep_and_return, (ReportsDrop(Handle::new(out.try_clone().unwrap())),));
    assert_eq!(inbox.recv(10), me, "the arguments outlived Process::new");
    let mut p = started(p);
    assert_eq!(inbox.recv(10), "ran");
    assert_eq!(inbox.recv(10), format!("dropped in {}", p.pid().unwrap()));
    assert_eq!(p.join().unwrap(), 0);
    let p = ctx.process(keep_and_panic, (ReportsDrop(out),));
    assert_eq!(inbox.recv(10), me);
    let mut p = started(p);
    assert_eq!(inbox.recv(10), format!("dropped in {}", p.pid().unwrap()));
    assert_eq!(p.join().unwrap(), 1);
}
