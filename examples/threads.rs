//! Threads: Thread(target=task) and a Thread subclass.
//!
//! Ported from Python:
//!
//! - `Thread(target=task, args=('zmm',))` and `class MyThread(Thread)`. `threading` is not
//!   `multiprocessing`: its Rust counterpart is `std::thread` (a struct with `run` for the
//!   subclass).
//! - `global money; money = 100` in a thread, 100 printed. A static atomic; adds the contrast: a
//!   child process changes only its own copy.
//! - `t3.daemon = True`; `Thread-1..3`, `zhu`, `GG` ×2. No daemon flag in Rust: a thread that is
//!   not joined dies when its process ends. The program runs in a child process so that its end
//!   really ends the thread; t3 sleeps longer so that its `GG` never comes (a race in the original).
//! - `current_thread().name`, `os.getpid()` in threads, `active_count()`. `active_count()` is the
//!   number of names in `/proc/self/task/*/comm` (CPython's `enumerate()`); runs in a child process
//!   so the count is the program's own. A child's main thread has no name (CPython's is
//!   `MainThread`).
//! - Daemon thread `foo` (`123`, `end123`) and `bar` (`456`, `end456`), `main-------`.
//!
//! Run it with `cargo run --example threads`; the `tour` example runs it too.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::Duration;

use multiproc::Process;

fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

fn task(name: String) {
    println!("  {name} is running");
    sleep_ms(10);
    println!("  {name} is over");
}

/// The original's `MyThread(Thread)` with `__init__(name)` and `run()`: a struct and a method, started
/// on a named thread.
struct MyThread {
    name: String,
}

impl MyThread {
    fn run(self) {
        println!("  {} is running", self.name);
        sleep_ms(10);
        println!("  {} is over", self.name);
    }

    fn start(self) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new().name(self.name.clone()).spawn(move || self.run())
    }
}

/// The two ways to start a thread, `Thread(target=task, args=('zmm',))` and a `Thread`
/// subclass. The main thread's line comes first: a thread starts far faster than a process.
pub fn two_ways_to_start_a_thread() -> multiproc::Result<()> {
    let t = thread::spawn(|| task("zmm".to_string()));
    println!("  主 (the main thread goes on at once)");
    t.join().expect("the thread panicked");
    let t = MyThread { name: "zmm".into() }.start().map_err(io)?;
    println!("  主");
    t.join().expect("the thread panicked");
    Ok(())
}

static MONEY: AtomicI32 = AtomicI32::new(666);

fn set_money() {
    MONEY.store(100, Ordering::SeqCst);
}

/// Threads share the process's memory (`global money; money = 100` in a thread, and the
/// main thread prints 100); a child process changes only its own copy, which is why processes
/// need queues, pipes and shared memory.
pub fn threads_share_memory() -> multiproc::Result<()> {
    MONEY.store(666, Ordering::SeqCst);
    thread::spawn(set_money).join().expect("the thread panicked");
    println!("  after a thread set money = 100: the main thread sees {}", MONEY.load(Ordering::SeqCst));
    MONEY.store(666, Ordering::SeqCst);
    let mut child = Process::new(set_money, ());
    child.start()?;
    child.join()?;
    println!("  after a child process set money = 100: the parent sees {}", MONEY.load(Ordering::SeqCst));
    assert_eq!(MONEY.load(Ordering::SeqCst), 666);
    Ok(())
}

fn gg_task(ms: u64) {
    println!("  {}", thread::current().name().unwrap_or("?"));
    sleep_ms(ms);
    println!("  GG");
}

/// A program whose main thread starts t1, t2 (joined before it ends: CPython's non-daemon
/// threads) and t3 (never joined: a daemon thread), prints `zhu` and returns. The process ends
/// with its main thread, and t3 with it.
fn daemon_thread_program() {
    let spawn = |i: u32, ms: u64| thread::Builder::new().name(format!("Thread-{i}")).spawn(move || gg_task(ms));
    let (t1, t2) = (spawn(1, 10).expect("spawn t1"), spawn(2, 10).expect("spawn t2"));
    // The original's three threads sleep alike, so whether t3's GG comes is a race there; here t3
    // sleeps longer, so it never does.
    let _t3 = spawn(3, 200).expect("spawn t3"); // detached: dies when the process ends
    sleep_ms(2); // the threads print their names before zhu, as in the original's output
    println!("  zhu");
    t1.join().expect("t1 panicked");
    t2.join().expect("t2 panicked");
    // main returns while t3 still sleeps: its GG never comes
}

fn foo() {
    println!("  123");
    sleep_ms(10);
    println!("  end123");
}

fn bar() {
    println!("  456");
    sleep_ms(30);
    println!("  end456");
}

/// The original's second daemon-thread program: t1 (daemon) runs `foo`, t2 runs `bar`, which takes
/// longer; the main thread waits for t2 only, and t1 finishes within that time.
fn foo_bar_program() {
    let t1 = thread::spawn(foo); // daemon: never joined
    let t2 = thread::spawn(bar);
    sleep_ms(2);
    println!("  main-------");
    t2.join().expect("t2 panicked");
    drop(t1);
}

/// Daemon threads. Rust has no daemon flag: a thread that is not joined dies when the
/// process ends, one that is joined is waited for. Each program runs in a child process, whose
/// end the example waits for, so the daemon threads really die with their process.
pub fn daemon_threads() -> multiproc::Result<()> {
    for mut child in [Process::new(daemon_thread_program, ()), Process::new(foo_bar_program, ())] {
        child.start()?;
        assert_eq!(child.join()?, 0, "{child}");
        println!();
    }
    Ok(())
}

fn named_task(name: &str, ms: u64) {
    println!("  {name} is running");
    println!("  current_thread: {}, pid {}", thread::current().name().unwrap_or("?"), std::process::id());
    sleep_ms(ms);
    println!("  {name} is over");
}

/// The names of this process's threads, from `/proc/self/task/*/comm` (CPython `enumerate()`;
/// their number is `active_count()`). The kernel's name of the main thread is the program's.
fn thread_names() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut names: Vec<String> = tasks
        .flatten()
        .map(|task| std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim_end().to_string())
        .collect();
    names.sort();
    names
}

/// `current_thread().name`, the same pid in every thread, `active_count()`. Run in a
/// child process so that the count is this program's own threads, not the tour's.
fn thread_names_program() {
    let printing = Mutex::new(()); // keeps each thread's lines together
    thread::scope(|s| {
        let t1 = thread::Builder::new().name("Thread-1".into()).spawn_scoped(s, || {
            let _one_at_a_time = printing.lock();
            named_task("zmm", 1);
        });
        let t2 = thread::Builder::new().name("Thread-2".into()).spawn_scoped(s, || {
            sleep_ms(3);
            let _one_at_a_time = printing.lock();
            named_task("yzy", 20);
        });
        t1.expect("spawn t1").join().expect("t1 panicked");
        let held = printing.lock();
        let names = thread_names();
        println!("  active_count() = {}: {names:?}", names.len());
        println!("  main process pid {}", std::process::id());
        // CPython's MainThread; Rust names the main thread "main" only in the program's own
        // `main`, and a child process of this crate runs its target on an unnamed thread.
        println!("  main current_thread: {}", thread::current().name().unwrap_or("(unnamed)"));
        drop(held);
        t2.expect("spawn t2").join().expect("t2 panicked");
    });
}

/// Thread names, pids and the count of active threads.
pub fn current_thread_and_active_count() -> multiproc::Result<()> {
    let mut child = Process::new(thread_names_program, ());
    child.start()?;
    assert_eq!(child.join()?, 0, "{child}");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    two_ways_to_start_a_thread()?;
    threads_share_memory()?;
    daemon_threads()?;
    current_thread_and_active_count()
}
