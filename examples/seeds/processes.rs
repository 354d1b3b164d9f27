//! The process scenarios of seed 002, shared by the standalone examples and the tour.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use multiproc::{Handle, Process, Run};
use serde::{Deserialize, Serialize};

fn work(i: u32) {
    println!("  process {i} (pid {}) is running", std::process::id());
}

/// Ten processes started, then all joined.
pub fn ten_processes() -> multiproc::Result<()> {
    let mut children: Vec<Process> = (0..10).map(|i| Process::new(work, (i,))).collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    println!("  all ten joined; the main process goes on");
    Ok(())
}

/// The seed's `MyProcess(Process)` subclass with a `run` method.
#[derive(Serialize, Deserialize)]
pub struct MyProcess {
    person: String,
}

impl Run for MyProcess {
    type Output = ();
    fn run(self) {
        println!("  pid {}: {} is chatting with the streamer", std::process::id(), self.person);
    }
}

pub fn my_process() -> multiproc::Result<()> {
    let mut children: Vec<Process> =
        ["Jedan", "太白", "alexDSB"].into_iter().map(|p| Process::from_run(MyProcess { person: p.into() })).collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    Ok(())
}

fn append_line(file: Handle<std::fs::File>, i: u32) -> std::io::Result<()> {
    let mut file = file.into_inner();
    // O_APPEND makes each write land at the end, whatever the others do; one write per line keeps
    // lines whole (`writeln!` on a file writes each piece separately).
    file.write_all(format!("line written by process {i} (pid {})\n", std::process::id()).as_bytes())
}

/// Ten processes append to one file opened by the parent; then the parent counts the lines.
pub fn append_to_one_file() -> multiproc::Result<()> {
    let path = std::env::temp_dir().join(format!("multiproc-seed-{}.txt", std::process::id()));
    let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).map_err(io)?;
    drop(file);
    let mut children = Vec::new();
    for i in 0..10 {
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(io)?;
        let mut child = Process::new(append_line, (Handle::new(file), i));
        child.start()?;
        children.push(child);
    }
    for child in &mut children {
        assert_eq!(child.join()?, 0);
    }
    let text = std::fs::read_to_string(&path).map_err(io)?;
    println!("  {} has {} lines", path.display(), text.lines().count());
    std::fs::remove_file(&path).map_err(io)?;
    Ok(())
}

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

fn daemon_body(report: Handle<std::os::unix::net::UnixDatagram>, mut started: multiproc::Connection) {
    println!("  daemon: 123 (pid {})", std::process::id());
    let _ = report.send(std::process::id().to_string().as_bytes());
    let _ = started.send(&());
    loop {
        std::thread::park(); // would run forever
    }
}

fn worker_body() {
    println!("  worker: 456");
    println!("  worker: end456");
}

/// Starts a daemon (and waits until it runs, so that the demonstration does not depend on timing)
/// and a worker; then its code ends.
fn start_daemon(report: Handle<std::os::unix::net::UnixDatagram>) -> multiproc::Result<Process> {
    let (mut started, started_child) = multiproc::pipe()?;
    let mut daemon = Process::new(daemon_body, (report, started_child)).with_daemon(true);
    daemon.start()?;
    started.set_timeout(Some(Duration::from_secs(10)));
    started.recv::<()>()?;
    Ok(daemon)
}

fn main_program(report: Handle<std::os::unix::net::UnixDatagram>) -> multiproc::Result<()> {
    let _daemon = start_daemon(report)?;
    let mut worker = Process::new(worker_body, ());
    worker.start()?;
    println!("  main-------  (its code ends here: the daemon is terminated, the worker joined)");
    Ok(())
}

fn wait_gone(pid: i32) -> bool {
    let Ok(pidfd) =
        rustix::process::pidfd_open(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::PidfdFlags::empty())
    else {
        return true;
    };
    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let limit = rustix::event::Timespec { tv_sec: 5, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&limit)), Ok(n) if n > 0)
}

/// A daemon process ends with its parent: when the parent's code ends, and when the parent is
/// killed. The "parent" here is a child of the example, so the example can watch.
pub fn daemon_dies_with_parent() -> multiproc::Result<()> {
    let (inbox, report) = std::os::unix::net::UnixDatagram::pair().map_err(io)?;
    inbox.set_read_timeout(Some(Duration::from_secs(5))).map_err(io)?;
    let mut program = Process::new(main_program, (Handle::new(report),));
    program.start()?;
    let mut buf = [0u8; 32];
    let n = inbox.recv(&mut buf).map_err(io)?;
    let daemon_pid: i32 = String::from_utf8_lossy(&buf[..n]).parse().unwrap_or(0);
    program.join()?;
    println!("  daemon {daemon_pid} gone after its parent ended: {}", wait_gone(daemon_pid));

    // The same when the parent is killed with SIGKILL: no exit code runs, the kernel kills the daemon.
    let (inbox, report) = std::os::unix::net::UnixDatagram::pair().map_err(io)?;
    inbox.set_read_timeout(Some(Duration::from_secs(5))).map_err(io)?;
    let mut program = Process::new(daemon_then_hang, (Handle::new(report),));
    program.start()?;
    let n = inbox.recv(&mut buf).map_err(io)?;
    let daemon_pid: i32 = String::from_utf8_lossy(&buf[..n]).parse().unwrap_or(0);
    program.kill()?;
    println!("  parent killed (exit code {}); daemon {daemon_pid} gone: {}", program.join()?, wait_gone(daemon_pid));
    Ok(())
}

fn daemon_then_hang(report: Handle<std::os::unix::net::UnixDatagram>) -> multiproc::Result<()> {
    let _daemon = start_daemon(report)?;
    loop {
        std::thread::park();
    }
}

fn talk(conn: Handle<TcpStream>, client: String) -> std::io::Result<()> {
    let mut conn = conn.into_inner();
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        println!("  server process {} got {:?} from {client}", std::process::id(), line.trim_end());
        conn.write_all(line.to_uppercase().as_bytes())?;
        line.clear();
    }
    Ok(())
}

fn client(port: u16, name: String) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    for word in ["hello", "bye"] {
        writeln!(stream, "{word} from {name}")?;
        let mut answer = String::new();
        reader.read_line(&mut answer)?;
        println!("  {name} got back {:?}", answer.trim_end());
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    Ok(())
}

/// A process-per-connection TCP echo server on loopback: each accepted socket is handed to a new
/// process. Bounded: it serves three clients and stops.
pub fn tcp_echo_server() -> multiproc::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let port = listener.local_addr().map_err(io)?.port();
    let mut clients: Vec<Process> = (0..3).map(|i| Process::new(client, (port, format!("client-{i}")))).collect();
    for c in &mut clients {
        c.start()?;
    }
    let mut handlers = Vec::new();
    for _ in 0..3 {
        let (conn, addr) = listener.accept().map_err(io)?;
        let mut handler = Process::new(talk, (Handle::new(conn), addr.to_string()));
        handler.start()?; // the parent's copy of the socket closes at the end of this iteration
        handlers.push(handler);
    }
    for p in clients.iter_mut().chain(handlers.iter_mut()) {
        assert_eq!(p.join()?, 0, "{p}");
    }
    println!("  served 3 clients, one process each");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 001 (its list of related articles): the parent's pid, a child's pid, two targets

fn run_proc(name: String) {
    println!("  Run child process {name} ({})...", std::process::id());
}

fn hell(name: String) {
    println!("  Hell {name}");
}

fn hello_at(name: String) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    println!("  hello {name} at {}.{:03} s since the epoch", now.as_secs(), now.subsec_millis());
}

/// Seed 001's related-article snippets: `print('Parent process %s.' % os.getpid())` and a child
/// `run_proc('test')` printing its own pid; two children with different targets (`f1`, `f2`);
/// three children `f('alvin')` printing the time. `os.getpid()` is `std::process::id()`; there is
/// no `if __name__ == '__main__'` guard: a child never runs `main`.
pub fn parent_and_child_pids() -> multiproc::Result<()> {
    println!("  Parent process {}.", std::process::id());
    let mut p = Process::new(run_proc, ("test".to_string(),));
    println!("  Child process will start.");
    p.start()?;
    p.join()?;
    println!("  Child process end.");
    let mut two = [Process::new(hell, ("name".to_string(),)), Process::new(hell, ("age".to_string(),))];
    let mut three: Vec<Process> = (0..3).map(|_| Process::new(hello_at, ("alvin".to_string(),))).collect();
    for p in two.iter_mut().chain(three.iter_mut()) {
        p.start()?;
    }
    for p in two.iter_mut().chain(three.iter_mut()) {
        assert_eq!(p.join()?, 0, "{p}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 002: the Process parameters, methods and attributes

fn chat(person: String, minutes: u32) {
    let me = multiproc::current_process();
    println!("  {} (pid {}): chatting with {person} for {minutes} minutes", me.name(), std::process::id());
}

fn wait_forever(started: multiproc::Connection) {
    drop(started); // the parent sees end of file: this child runs
    loop {
        std::thread::park();
    }
}

/// Seed 002's table of `Process` parameters (`target`, `args`, `kwargs`, `name`), methods
/// (`start`, `join([timeout])`, `is_alive`, `terminate`) and attributes (`daemon`, `name`, `pid`,
/// `exitcode`). Rust has no keyword arguments: `kwargs={'name': 'egon', 'age': 18}` become
/// positional arguments (or one serde struct).
pub fn process_attributes() -> multiproc::Result<()> {
    let mut p = Process::new(chat, ("egon".to_string(), 18u32)).with_name("chatter");
    println!("  before start: {p}, daemon {}, pid {:?}, exitcode {:?}", p.daemon(), p.pid(), p.exitcode());
    p.start()?;
    println!("  started: pid {:?}, is_alive {}", p.pid(), p.is_alive());
    println!("  join() -> {}; now {p}, is_alive {}", p.join()?, p.is_alive());

    let (mut started, child_end) = multiproc::pipe()?;
    // A daemon, so that it cannot outlive the example even if a step below fails.
    let mut sleeper = Process::new(wait_forever, (child_end,)).with_daemon(true);
    sleeper.start()?;
    started.set_timeout(Some(Duration::from_secs(10)));
    let _ = started.recv::<()>(); // end of file once the child dropped its end
    println!(
        "  join(timeout=20 ms) on a child that never ends -> {:?}",
        sleeper.join_timeout(Duration::from_millis(20))?
    );
    sleeper.terminate()?;
    println!(
        "  after terminate(): join() -> {}, exitcode {:?}: ended by signal 15",
        sleeper.join()?,
        sleeper.exitcode()
    );
    Ok(())
}

fn daemon_tries_a_child() -> i32 {
    let mut grandchild = Process::new(worker_body, ());
    match grandchild.start() {
        Err(e @ multiproc::Error::DaemonCannotHaveChildren) => {
            println!("  the daemon's start(): {e}");
            0
        }
        other => {
            println!("  the daemon's start(): unexpected {other:?}");
            1
        }
    }
}

/// Seed 002: "daemonic processes are not allowed to have children": a daemon child's `start()`
/// fails with `Error::DaemonCannotHaveChildren` (CPython raises an `AssertionError`).
pub fn daemon_cannot_have_children() -> multiproc::Result<()> {
    let mut daemon = Process::new(daemon_tries_a_child, ()).with_daemon(true);
    daemon.start()?;
    let code = daemon.join()?;
    println!("  the daemon exited with {code}");
    assert_eq!(code, 0);
    Ok(())
}
