//! Process pools, thread pools and the executor: CPython's pool conformance items that apply, and
//! the failures CPython hangs on, provoked for real (SIGKILL from the test, abort, a segfault, exit,
//! a hung task).

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Outbox, channel, send, sigkill, sigstop, wait_for_exit_of, watchdog};
use multiproc::pool::{Executor, Options, Pool, ThreadPool, Typed};
use multiproc::{Error, Handle, StartMethod};
use serde::{Deserialize, Serialize};

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn pid(_: u32) -> u32 {
    std::process::id()
}

fn parse(text: String) -> Result<i64, std::num::ParseIntError> {
    text.parse()
}

fn panics(x: u32) -> u32 {
    if x == 3 {
        panic!("task {x} refuses");
    }
    x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Reports its pid to the test, then waits to be killed.
fn report_pid_and_hang(outbox: Outbox) -> u32 {
    send(&outbox, &std::process::id().to_string());
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn abort_now() -> u32 {
    std::process::abort()
}

fn segfault() -> u32 {
    // A deliberate bad write: address 16 is never mapped.
    let address = 16usize as *mut u8;
    // SAFETY: none; this is the crash under test. The write is volatile so it is not optimized out.
    unsafe { std::ptr::write_volatile(address, 1) };
    0
}

fn exit_three() -> u32 {
    std::process::exit(3)
}

/// Dies the first time (leaving `marker`), succeeds when run again.
fn die_once(marker: String) -> u32 {
    if std::fs::metadata(&marker).is_err() {
        std::fs::write(&marker, b"ran").unwrap();
        std::process::abort();
    }
    7
}

fn greet_init(outbox: Outbox) {
    send(&outbox, &format!("init {}", std::process::id()));
}

fn failing_init() -> Result<(), String> {
    Err("no database".into())
}

fn echo_to(outbox: Handle<UnixDatagram>, text: String) -> usize {
    outbox.send(text.as_bytes()).unwrap()
}

#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be encoded"))
    }
}

fn take_unencodable(_: Unencodable) -> u32 {
    0
}

fn pool(n: usize) -> Pool {
    Pool::new(n).expect("pool")
}

#[test]
fn apply_and_apply_async() {
    watchdog("apply_and_apply_async", 60, || {
        let pool = pool(2);
        assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
        assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
        let results: Vec<_> = (0..20).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
        let values: Vec<u64> = results.into_iter().map(|r| r.get().unwrap()).collect();
        assert_eq!(values, (0..20).map(|i| i * i).collect::<Vec<_>>());
    });
}

#[test]
fn map_starmap_and_chunksizes() {
    watchdog("map_starmap_and_chunksizes", 60, || {
        let pool = pool(3);
        let expected: Vec<u64> = (0..100).map(|i| i * i).collect();
        assert_eq!(pool.map(square, 0..100).unwrap(), expected);
        for chunksize in [1, 7, 20, 1000] {
            let result = pool.map_async_with(square, 0..100, Options::new().chunksize(chunksize)).unwrap();
            assert_eq!(result.get().unwrap(), expected, "chunksize {chunksize}");
        }
        let pairs: Vec<(u64, u64)> = (0..50).map(|i| (i, 2 * i)).collect();
        assert_eq!(pool.starmap(add, pairs.clone()).unwrap(), (0..50).map(|i| 3 * i).collect::<Vec<_>>());
        assert_eq!(pool.starmap_async(add, pairs).unwrap().get().unwrap()[49], 147);
    });
}

/// Chunks whose arguments are large leave from the call's buffer, in frames far larger than a
/// socket holds (so they go out in several sends), beside small ones; every value comes back.
#[test]
fn large_arguments_go_out_whole() {
    watchdog("large_arguments_go_out_whole", 60, || {
        let pool = pool(2);
        let n: u64 = 2_000_000;
        for chunksize in [1_000_000, 3_000, 250_001] {
            let values = pool.map_async_with(square, 0..n, Options::new().chunksize(chunksize)).unwrap().get().unwrap();
            assert_eq!(values.len() as u64, n, "chunksize {chunksize}");
            assert!(values.iter().enumerate().all(|(i, v)| *v == (i as u64) * (i as u64)), "chunksize {chunksize}");
        }
        let texts: Vec<String> = (0..4).map(|i| format!("{i}").repeat(100_000)).collect();
        let lengths = pool.map_async_with(text_len, texts, Options::new().chunksize(2)).unwrap().get().unwrap();
        assert_eq!(lengths, vec![100_000; 4]);
        assert_eq!(pool.apply(square, (7,)).unwrap(), 49);
    });
}

fn text_len(text: String) -> usize {
    text.len()
}

#[test]
fn empty_inputs_complete() {
    watchdog("empty_inputs_complete", 60, || {
        let pool = pool(2);
        assert!(pool.map(square, Vec::new()).unwrap().is_empty());
        assert!(
            pool.map_async_with(square, Vec::new(), Options::new().chunksize(1)).unwrap().get().unwrap().is_empty()
        );
        assert_eq!(pool.imap(square, Vec::new()).unwrap().count(), 0);
        assert_eq!(pool.imap_unordered(square, Vec::new()).unwrap().count(), 0);
    });
}

#[test]
fn map_async_callbacks() {
    watchdog("map_async_callbacks", 60, || {
        let pool = pool(2);
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (ok, err) = (Arc::clone(&seen), Arc::clone(&seen));
        let options = Options::new()
            .callback(move |v: &Vec<i64>| ok.lock().unwrap().push(format!("callback {v:?}")))
            .error_callback(move |e| err.lock().unwrap().push(format!("error {e}")));
        pool.map_async_with(parse, vec!["1".to_string()], options).unwrap().wait();
        let (ok, err) = (Arc::clone(&seen), Arc::clone(&seen));
        let options = Options::new()
            .callback(move |v: &Vec<i64>| ok.lock().unwrap().push(format!("callback {v:?}")))
            .error_callback(move |e| err.lock().unwrap().push(format!("error {e}")));
        let failed = pool.map_async_with(parse, vec!["a".to_string()], options).unwrap();
        assert!(matches!(failed.get(), Err(Error::TaskFailed { .. })));
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], "callback [1]");
        assert!(seen[1].starts_with("error a pool task failed: invalid digit"), "{}", seen[1]);
        assert_eq!(seen.len(), 2);
    });
}

#[test]
fn callbacks_run_in_the_parent_and_a_panicking_one_does_not_hang_the_pool() {
    watchdog("callbacks_run_in_the_parent", 60, || {
        let pool = pool(2);
        let where_ran = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&where_ran);
        pool.apply_async_with(
            pid,
            (0,),
            Options::new().callback(move |_| w.store(std::process::id() as usize, Ordering::SeqCst)),
        )
        .unwrap()
        .get()
        .unwrap();
        assert_eq!(where_ran.load(Ordering::SeqCst), std::process::id() as usize);
        // gh-83371: a callback that raises hangs CPython's pool.
        let r = pool.apply_async_with(square, (3,), Options::new().callback(|_| panic!("callback panics"))).unwrap();
        assert_eq!(r.get().unwrap(), 9);
        assert_eq!(pool.map(square, 0..10).unwrap()[3], 9);
        pool.close();
        pool.join().unwrap();
    });
}

#[test]
fn task_failures_carry_their_message() {
    watchdog("task_failures_carry_their_message", 60, || {
        let pool = pool(2);
        match pool.apply(panics, (3,)) {
            Err(Error::TaskFailed { message, .. }) => {
                assert!(message.contains("task 3 refuses"), "{message}");
                assert!(message.contains("tests/pool.rs"), "{message}");
            }
            other => panic!("expected a task failure, got {other:?}"),
        }
        match pool.apply(parse, ("x".to_string(),)) {
            Err(Error::TaskFailed { message, .. }) => assert!(message.contains("invalid digit"), "{message}"),
            other => panic!("expected a task failure, got {other:?}"),
        }
        // A failing map fails after every task ran (bpo-23992), and close/join still work.
        assert!(matches!(
            pool.map_async_with(panics, 0..10, Options::new().chunksize(1)).unwrap().get(),
            Err(Error::TaskFailed { .. })
        ));
        let stats = pool.stats();
        assert_eq!(stats.tasks_done, 9);
        assert_eq!(stats.tasks_failed, 3);
        assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
        pool.close();
        pool.join().unwrap();
    });
}

/// A task's own error type (CPython: `except ZeroDivisionError`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum MathError {
    DivisionByZero,
    Overflow { at: i64 },
}

impl std::fmt::Display for MathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MathError::DivisionByZero => f.write_str("division by zero"),
            MathError::Overflow { at } => write!(f, "overflow at {at}"),
        }
    }
}

fn divide(a: i64, b: i64) -> Result<i64, Typed<MathError>> {
    if b == 0 {
        return Err(MathError::DivisionByZero.into());
    }
    a.checked_div(b).ok_or(Typed(MathError::Overflow { at: a }))
}

fn reciprocal(x: i64) -> Result<i64, Typed<MathError>> {
    divide(1000, x)
}

#[test]
fn typed_task_errors_come_back_as_values() {
    watchdog("typed_task_errors_come_back_as_values", 60, || {
        let pool = pool(2);
        assert_eq!(pool.apply(divide, (10, 2)).unwrap(), 5);
        let error = pool.apply(divide, (1, 0)).unwrap_err();
        assert_eq!(error.task_error::<MathError>(), Some(MathError::DivisionByZero));
        assert_eq!(error.to_string(), "a pool task failed: division by zero", "the message stays for display");
        assert_eq!(error.task_error::<String>(), None, "another type is not this error");
        let error = pool.apply(divide, (i64::MIN, -1)).unwrap_err();
        assert_eq!(error.task_error::<MathError>(), Some(MathError::Overflow { at: i64::MIN }));
        // In a map (the first failure), an imap (in its place), a thread pool and an executor.
        let error = pool.map(reciprocal, [1, 0, 2]).unwrap_err();
        assert_eq!(error.task_error::<MathError>(), Some(MathError::DivisionByZero));
        let out: Vec<_> = pool.imap(reciprocal, vec![4, 0]).unwrap().collect();
        assert_eq!(out[0].as_ref().unwrap(), &250);
        assert_eq!(out[1].as_ref().unwrap_err().task_error::<MathError>(), Some(MathError::DivisionByZero));
        let threads = ThreadPool::new(1).unwrap();
        let error = threads.apply(|| divide(3, 0)).unwrap_err();
        assert_eq!(error.task_error::<MathError>(), Some(MathError::DivisionByZero));
        let executor = Executor::new(1).unwrap();
        let error = executor.submit(divide, (3, 0)).unwrap().get().unwrap_err();
        assert_eq!(error.task_error::<MathError>(), Some(MathError::DivisionByZero));
        // An untyped error keeps its type's name; panics and deaths have none.
        match pool.apply(parse, ("x".to_string(),)).unwrap_err() {
            Error::TaskFailed { returned: Some(returned), .. } => {
                assert!(returned.type_name().ends_with("ParseIntError"), "{}", returned.type_name());
                assert!(!returned.has_value());
            }
            other => panic!("expected a task failure, got {other:?}"),
        }
        assert!(matches!(pool.apply(panics, (3,)), Err(Error::TaskFailed { returned: None, .. })));
        let died = pool.apply(abort_now, ()).unwrap_err();
        assert!(matches!(died, Error::WorkerDied { .. }));
        assert_eq!(died.task_error::<MathError>(), None);
    });
}

#[test]
fn unencodable_arguments_fail_instead_of_hanging() {
    watchdog("unencodable_arguments", 60, || {
        let pool = pool(2);
        assert!(matches!(pool.map(take_unencodable, vec![Unencodable, Unencodable]), Err(Error::Codec { .. })));
        assert!(matches!(pool.apply(take_unencodable, (Unencodable,)), Err(Error::Codec { .. })));
        assert_eq!(pool.apply(square, (2,)).unwrap(), 4);
    });
}

#[test]
fn get_timeout_and_wait() {
    watchdog("get_timeout_and_wait", 60, || {
        let pool = pool(1);
        let r = pool.apply_async(sleep_ms, (300,)).unwrap();
        let t = Instant::now();
        assert!(matches!(r.get_timeout(Duration::from_millis(50)), Err(Error::Timeout(_))));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(!r.ready());
        assert!(r.successful().is_err());
        assert!(r.wait_timeout(Duration::from_secs(10)));
        assert!(r.successful().unwrap());
        assert_eq!(r.get().unwrap(), 300);
    });
}

#[test]
fn imap_in_order_and_unordered() {
    watchdog("imap_in_order_and_unordered", 60, || {
        let pool = pool(3);
        let values: Vec<u64> = pool.imap(square, 0..10).unwrap().map(Result::unwrap).collect();
        assert_eq!(values, (0..10).map(|i| i * i).collect::<Vec<_>>());
        let values: Vec<u64> =
            pool.imap_with(square, 0..1000, Options::new().chunksize(100)).unwrap().map(Result::unwrap).collect();
        assert_eq!(values, (0..1000).map(|i| i * i).collect::<Vec<_>>());
        let mut values: Vec<u64> = pool.imap_unordered(square, 0..100).unwrap().map(Result::unwrap).collect();
        values.sort();
        assert_eq!(values, (0..100).map(|i| i * i).collect::<Vec<_>>());
        let mut it = pool.imap(sleep_ms, vec![400]).unwrap();
        assert!(matches!(it.next_timeout(Duration::from_millis(20)), Some(Err(Error::Timeout(_)))));
        assert_eq!(it.next().unwrap().unwrap(), 400);
        assert!(it.next().is_none());
        // A failed task yields its error in its place, and the rest go on.
        let out: Vec<_> = pool.imap(panics, 0..6).unwrap().collect();
        assert!(matches!(out[3], Err(Error::TaskFailed { .. })));
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 5);
    });
}

/// An input that reports each item it hands out on `read`, and ends (dropping `read`) with it.
struct Reported<I> {
    items: I,
    read: std::sync::mpsc::Sender<u64>,
}

impl<I: Iterator<Item = u64>> Iterator for Reported<I> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        let item = self.items.next()?;
        let _ = self.read.send(item);
        Some(item)
    }
}

#[test]
fn imap_of_an_endless_input_yields_at_once() {
    watchdog("imap_of_an_endless_input_yields_at_once", 60, || {
        let pool = pool(2);
        let first: Vec<u64> = pool.imap(square, 0..).unwrap().take(5).map(Result::unwrap).collect();
        assert_eq!(first, [0, 1, 4, 9, 16]);
        let mut any: Vec<u64> = pool
            .imap_unordered_with(square, 0.., Options::new().chunksize(3))
            .unwrap()
            .take(6)
            .map(Result::unwrap)
            .collect();
        any.sort();
        assert_eq!(any.len(), 6);
        let threads = ThreadPool::new(2).unwrap();
        let first: Vec<u64> = threads.imap(|x: u64| x + 1, 0..).unwrap().take(3).map(Result::unwrap).collect();
        assert_eq!(first, [1, 2, 3]);
    });
}

#[test]
fn imap_reads_a_slow_input_as_it_comes() {
    // A request/response exchange: the next input exists only once the previous result was seen
    // (CPython's imap serves this; reading the whole input first would hang).
    watchdog("imap_reads_a_slow_input_as_it_comes", 60, || {
        let pool = pool(2);
        let (requests, inbox) = std::sync::mpsc::channel::<u64>();
        let mut results = pool.imap(square, inbox).unwrap();
        for x in 1..=5u64 {
            requests.send(x).unwrap();
            assert_eq!(results.next().unwrap().unwrap(), x * x);
        }
        drop(requests);
        assert!(results.next().is_none());
    });
}

#[test]
fn imap_reads_ahead_a_bounded_number_of_chunks() {
    watchdog("imap_reads_ahead_a_bounded_number_of_chunks", 60, || {
        let pool = pool(2);
        let (read, reads) = std::sync::mpsc::channel();
        let input = Reported { items: 0.., read };
        let options = Options::new().chunksize(2).buffersize(3);
        let mut results = pool.imap_with(square, input, options).unwrap();
        // Three chunks of two are read ahead of the reader, and no more.
        for expected in 0..6 {
            assert_eq!(reads.recv_timeout(Duration::from_secs(10)).unwrap(), expected);
        }
        assert!(reads.recv_timeout(Duration::from_millis(300)).is_err(), "read past the read-ahead");
        // Taking values makes room for as many chunks again: the iterator takes every finished
        // chunk at once, so after the first chunk's values between one and three chunks more.
        assert_eq!(results.next().unwrap().unwrap(), 0);
        assert_eq!(results.next().unwrap().unwrap(), 1);
        for expected in 6..8 {
            assert_eq!(reads.recv_timeout(Duration::from_secs(10)).unwrap(), expected);
        }
        let mut last = 7;
        while let Ok(item) = reads.recv_timeout(Duration::from_millis(300)) {
            last = item;
        }
        assert!(last <= 11, "read up to item {last}, past the read-ahead");
        // Dropping the iterator stops the reading: the feeder drops the input (and its sender).
        drop(results);
        loop {
            match reads.recv_timeout(Duration::from_secs(10)) {
                Ok(_) => continue, // at most the chunk being read when the iterator went
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the feeder kept the input"),
            }
        }
    });
}

#[test]
fn close_lets_an_unread_imap_run_to_the_end() {
    // CPython runs every task of an imap started before close(), read or not, and join() waits.
    watchdog("close_lets_an_unread_imap_run_to_the_end", 60, || {
        let pool = pool(2);
        let results = pool.imap_with(square, 0..500u64, Options::new().buffersize(4)).unwrap();
        pool.close();
        assert!(matches!(pool.apply(square, (1,)), Err(Error::InvalidState(_))));
        pool.join().unwrap();
        assert_eq!(pool.stats().tasks_done, 500);
        let values: Vec<u64> = results.map(Result::unwrap).collect();
        assert_eq!(values, (0..500).map(|x| x * x).collect::<Vec<_>>());
        let threads = ThreadPool::new(2).unwrap();
        let results = threads.imap_with(|x: u64| x * 2, 0..300u64, Options::new().buffersize(2)).unwrap();
        threads.close();
        threads.join().unwrap();
        assert_eq!(threads.stats().tasks_done, 300);
        assert_eq!(results.count(), 300);
    });
}

#[test]
fn imap_input_that_panics_or_a_terminated_pool_ends_the_iteration() {
    watchdog("imap_input_that_panics", 60, || {
        let pool = pool(2);
        let input = (0..10u64).map(|x| if x == 4 { panic!("input item {x} is bad") } else { x });
        let out: Vec<_> = pool.imap(square, input).unwrap().collect();
        assert_eq!(out.len(), 5, "{out:?}");
        assert!(out[..4].iter().all(Result::is_ok));
        match &out[4] {
            Err(Error::TaskFailed { message, .. }) => assert!(message.contains("input item 4 is bad"), "{message}"),
            other => panic!("expected the input's panic, got {other:?}"),
        }
        let (requests, inbox) = std::sync::mpsc::channel::<u64>();
        let mut results = pool.imap(square, inbox).unwrap();
        requests.send(3).unwrap();
        assert_eq!(results.next().unwrap().unwrap(), 9);
        pool.terminate();
        requests.send(4).unwrap();
        assert!(matches!(results.next(), Some(Err(Error::PoolTerminated))));
        assert!(results.next().is_none());
    });
}

#[test]
fn pool_sizes() {
    watchdog("pool_sizes", 60, || {
        assert!(matches!(Pool::new(0), Err(Error::InvalidState(_))));
        assert!(matches!(Pool::builder().processes(1).max_tasks_per_child(0).build(), Err(Error::InvalidState(_))));
        assert!(matches!(
            Pool::builder().processes(1).start_method(StartMethod::Fork).build(),
            Err(Error::InvalidState(_))
        ));
        let pool = pool(3);
        assert_eq!(pool.processes(), 3);
        assert_eq!(pool.stats().workers_started, 3);
    });
}

fn worker_name(_: u32) -> String {
    multiproc::current_process().name().to_string()
}

/// `{prefix}-N` (or `{prefix}-N:M` in a child), as CPython names processes.
fn named(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| n.split(':').all(|part| part.parse::<u32>().is_ok()))
}

#[test]
fn defaults_worker_names_and_display_as_cpython() {
    watchdog("defaults_worker_names_and_display", 60, || {
        // `Pool()`: cpu_count() workers; `<multiprocessing.pool.Pool state=RUN pool_size=N>`.
        let pool = Pool::with_cpu_count().unwrap();
        let n = multiproc::cpu_count();
        assert_eq!(pool.processes(), n);
        assert_eq!(pool.to_string(), format!("<multiprocessing.pool.Pool state=RUN pool_size={n}>"));
        let names = pool.map_async_with(worker_name, 0..(8 * n as u32), Options::new().chunksize(1)).unwrap();
        for name in names.get().unwrap() {
            assert!(named(&name, "ForkServerPoolWorker"), "{name}");
        }
        pool.close();
        assert_eq!(pool.to_string(), format!("<multiprocessing.pool.Pool state=CLOSE pool_size={n}>"));
        pool.terminate();
        assert_eq!(pool.to_string(), format!("<multiprocessing.pool.Pool state=TERMINATE pool_size={n}>"));
        let spawned = Pool::builder().processes(1).start_method(StartMethod::Spawn).build().unwrap();
        let name = spawned.apply(worker_name, (0,)).unwrap();
        assert!(named(&name, "SpawnPoolWorker"), "{name}");
        let threads = ThreadPool::with_cpu_count().unwrap();
        assert_eq!(threads.to_string(), format!("<multiprocessing.pool.ThreadPool state=RUN pool_size={n}>"));
        threads.close();
        assert_eq!(threads.to_string(), format!("<multiprocessing.pool.ThreadPool state=CLOSE pool_size={n}>"));
        let executor = Executor::with_cpu_count().unwrap();
        assert_eq!(executor.submit(square, (3,)).unwrap().get().unwrap(), 9);
        assert_eq!(Pool::builder().build().unwrap().processes(), n);
    });
}

#[test]
fn pool_of_200() {
    watchdog("pool_of_200", 120, || {
        let pool = pool(200);
        let squares = pool.map(square, 0..1000).unwrap();
        assert_eq!(squares.iter().sum::<u64>(), 332_833_500);
        pool.close();
        pool.join().unwrap();
    });
}

#[test]
fn terminate_returns_promptly_and_fails_what_was_left() {
    watchdog("terminate_returns_promptly", 60, || {
        let pool = pool(2);
        let result = pool.map_async_with(sleep_ms, vec![1000; 10_000], Options::new().chunksize(1)).unwrap();
        let single = pool.apply_async(sleep_ms, (1000,)).unwrap();
        let t = Instant::now();
        pool.terminate();
        pool.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "terminate took {:?}", t.elapsed());
        assert!(matches!(result.get(), Err(Error::PoolTerminated)));
        assert!(matches!(single.get(), Err(Error::PoolTerminated)));
    });
}

#[test]
fn closed_pools_refuse_work_and_join_needs_close() {
    watchdog("closed_pools_refuse_work", 60, || {
        let pool = pool(2);
        assert!(matches!(pool.join(), Err(Error::InvalidState(_))));
        let pending = pool.map_async(sleep_ms, vec![50; 4]).unwrap();
        pool.close();
        assert!(matches!(pool.map_async(square, 0..3), Err(Error::InvalidState(_))));
        assert!(matches!(pool.apply_async(square, (1,)), Err(Error::InvalidState(_))));
        pool.join().unwrap();
        assert_eq!(pending.get().unwrap(), vec![50; 4]);
    });
}

/// Whether `pid` is gone: ended *and* reaped (a zombie still has its `/proc` entry).
fn reaped(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A pool of `n` workers, started with `method`, whose pids its initializer reported.
fn pool_with_pids(n: usize, method: StartMethod) -> (Pool, Vec<i32>) {
    let (inbox, outbox) = channel();
    let pool = Pool::builder().processes(n).start_method(method).initializer(greet_init, (outbox,)).build().unwrap();
    let pids = (0..n).map(|_| inbox.recv(30).trim_start_matches("init ").parse().unwrap()).collect();
    (pool, pids)
}

// close() + join(): the scheduler's thread ends once it told the workers to stop, and join waits
// for the workers itself. It returns only once every worker has exited and been reaped (spawn's
// workers are this process's own children: a zombie would show), with every result and callback
// delivered before, including those of tasks still running at the close.
#[test]
fn join_after_close_returns_once_every_worker_is_reaped_and_every_callback_ran() {
    watchdog("join_after_close_reaps", 60, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let (pool, pids) = pool_with_pids(3, method);
            let called = Arc::new(AtomicUsize::new(0));
            let c = Arc::clone(&called);
            let options = Options::new().chunksize(1).callback(move |_: &Vec<u64>| {
                c.fetch_add(1, Ordering::SeqCst);
            });
            let pending = pool.map_async_with(sleep_ms, vec![20; 6], options).unwrap();
            pool.close();
            pool.join().unwrap();
            assert_eq!(called.load(Ordering::SeqCst), 1, "{method:?}: the callback had not run when join returned");
            assert!(pending.ready());
            for &pid in &pids {
                assert!(reaped(pid), "{method:?}: worker {pid} not reaped when join returned");
            }
            assert_eq!(pool.stats().workers_restarted, 0);
            assert_eq!(pending.get().unwrap(), vec![20; 6]);
            pool.join().unwrap();
        }
    });
}

// A pool closed and dropped without join: the drop terminates it and waits for its workers, those
// the scheduler had already told to stop (handed over for a join that never came) included.
#[test]
fn dropping_a_closed_pool_reaps_its_workers() {
    watchdog("dropping_a_closed_pool", 60, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let (pool, pids) = pool_with_pids(2, method);
            assert_eq!(pool.map(square, 0..10).unwrap()[3], 9);
            pool.close();
            drop(pool);
            for &pid in &pids {
                assert!(reaped(pid), "{method:?}: worker {pid} not reaped when the pool was dropped");
            }
        }
    });
}

#[test]
fn initializer_runs_once_per_worker() {
    watchdog("initializer_runs_once_per_worker", 60, || {
        let (inbox, outbox) = channel();
        let pool = Pool::builder().processes(2).initializer(greet_init, (outbox,)).build().unwrap();
        let mut greeted: Vec<String> = (0..2).map(|_| inbox.recv(30)).collect();
        greeted.sort();
        let mut pids: Vec<u32> = pool.map_async_with(pid, 0..40, Options::new().chunksize(1)).unwrap().get().unwrap();
        pids.sort();
        pids.dedup();
        for pid in pids {
            assert!(greeted.contains(&format!("init {pid}")), "{pid} not in {greeted:?}");
        }
    });
}

#[test]
fn a_failing_initializer_breaks_the_pool_instead_of_looping() {
    watchdog("failing_initializer", 60, || {
        let pool = Pool::builder().processes(2).initializer(failing_init, ()).build().unwrap();
        match pool.apply(square, (2,)) {
            Err(Error::TaskFailed { message, .. }) => assert!(message.contains("initializer"), "{message}"),
            Err(Error::InvalidState(message)) => assert!(message.contains("initializer"), "{message}"),
            other => panic!("expected the broken pool to say so, got {other:?}"),
        }
    });
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    watchdog("max_tasks_per_child", 60, || {
        let pool = Pool::builder().processes(2).max_tasks_per_child(10).build().unwrap();
        let first: Vec<u32> = pool.map_async_with(pid, 0..100, Options::new().chunksize(1)).unwrap().get().unwrap();
        assert_eq!(first.len(), 100);
        let mut distinct = first.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() >= 10, "100 tasks at 10 per worker need 10 workers, saw {}", distinct.len());
        assert_eq!(pool.stats().workers_restarted, 0);
        // bpo-10332: close with tasks pending, then join.
        let pool = Pool::builder().processes(2).max_tasks_per_child(1).build().unwrap();
        let result = pool.map_async_with(square, 0..6, Options::new().chunksize(1)).unwrap();
        pool.close();
        pool.join().unwrap();
        assert_eq!(result.get().unwrap(), vec![0, 1, 4, 9, 16, 25]);
    });
}

/// Runs `crash` in a pool among ordinary tasks and returns its error; the others must complete.
fn crash_among_others<F: multiproc::pool::Task<(), Output = u32>>(crash: F) -> Error {
    let pool = pool(2);
    let before: Vec<_> = (0..5).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    let crashed = pool.apply_async(crash, ()).unwrap();
    let after: Vec<_> = (5..10).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    let values: Vec<u64> = before.into_iter().chain(after).map(|r| r.get().unwrap()).collect();
    assert_eq!(values, (0..10).map(|i| i * i).collect::<Vec<_>>());
    let error = crashed.get().unwrap_err();
    assert_eq!(pool.map(square, 0..20).unwrap().len(), 20, "the replaced worker serves");
    assert_eq!(pool.stats().workers_restarted, 1);
    error
}

#[test]
fn a_worker_killed_by_the_test_fails_only_its_task() {
    watchdog("worker_killed_by_sigkill", 60, || {
        let pool = pool(2);
        let (inbox, outbox) = channel();
        let victim = pool.apply_async(report_pid_and_hang, (outbox,)).unwrap();
        let others = pool.map_async_with(square, 0..50, Options::new().chunksize(1)).unwrap();
        let pid: i32 = inbox.recv(30).parse().unwrap();
        sigkill(pid);
        match victim.get() {
            Err(Error::WorkerDied { pid: died, how }) => {
                assert_eq!(died, pid);
                assert!(how.contains("SIGKILL"), "{how}");
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        assert_eq!(others.get().unwrap().len(), 50);
        assert_eq!(pool.stats().workers_restarted, 1);
        assert_eq!(pool.apply(square, (9,)).unwrap(), 81);
    });
}

#[test]
fn terminate_and_join_end_a_pool_with_a_stopped_worker() {
    // A worker stopped with SIGSTOP (a hung process) answers nothing and takes no signal but
    // SIGKILL: terminating the pool must not wait for it.
    watchdog("terminate_and_join_end_a_pool_with_a_stopped_worker", 60, || {
        let pool = pool(2);
        let (inbox, outbox) = channel();
        let stuck = pool.apply_async(report_pid_and_hang, (outbox,)).unwrap();
        let pid: i32 = inbox.recv(30).parse().unwrap();
        sigstop(pid);
        assert_eq!(pool.apply(square, (3,)).unwrap(), 9, "the other worker serves");
        pool.terminate();
        pool.join().unwrap();
        assert!(wait_for_exit_of(pid, 10), "the stopped worker outlived its pool");
        assert!(stuck.get().is_err());
    });
}

#[test]
fn a_worker_that_aborts_fails_only_its_task() {
    watchdog("worker_aborts", 60, || match crash_among_others(abort_now) {
        Error::WorkerDied { how, .. } => assert!(how.contains("SIGABRT"), "{how}"),
        other => panic!("expected WorkerDied, got {other:?}"),
    });
}

#[test]
fn a_worker_that_segfaults_fails_only_its_task() {
    watchdog("worker_segfaults", 60, || match crash_among_others(segfault) {
        Error::WorkerDied { how, .. } => assert!(how.contains("SIGSEGV"), "{how}"),
        other => panic!("expected WorkerDied, got {other:?}"),
    });
}

#[test]
fn a_worker_that_exits_fails_only_its_task() {
    watchdog("worker_exits", 60, || match crash_among_others(exit_three) {
        Error::WorkerDied { how, .. } => assert_eq!(how, "exited with code 3"),
        other => panic!("expected WorkerDied, got {other:?}"),
    });
}

#[test]
fn a_hung_task_times_out_and_its_worker_is_replaced() {
    watchdog("hung_task_times_out", 60, || {
        let pool = Pool::builder().processes(2).task_timeout(Duration::from_millis(300)).build().unwrap();
        let hung = pool.apply_async(sleep_ms, (60_000,)).unwrap();
        let quick = pool.map(square, 0..30).unwrap();
        assert_eq!(quick.len(), 30);
        let t = Instant::now();
        assert!(matches!(hung.get(), Err(Error::TaskTimedOut(d)) if d == Duration::from_millis(300)));
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(pool.stats().workers_restarted, 1);
        // A per-call timeout overrides the pool's.
        let slow = pool.apply_async_with(sleep_ms, (500,), Options::new().timeout(Duration::from_secs(20))).unwrap();
        assert_eq!(slow.get().unwrap(), 500);
        let short =
            pool.apply_async_with(sleep_ms, (5_000,), Options::new().timeout(Duration::from_millis(100))).unwrap();
        assert!(matches!(short.get(), Err(Error::TaskTimedOut(_))));
        assert_eq!(pool.apply(square, (6,)).unwrap(), 36);
    });
}

#[test]
fn retries_rerun_a_task_whose_worker_died() {
    watchdog("retries", 60, || {
        let marker = std::env::temp_dir().join(format!("multiproc-pool-retry-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let pool = pool(2);
        let marker_text = marker.to_string_lossy().into_owned();
        let value = pool.apply_async_with(die_once, (marker_text,), Options::new().retries(1)).unwrap().get().unwrap();
        assert_eq!(value, 7);
        assert_eq!(pool.stats().workers_restarted, 1);
        let _ = std::fs::remove_file(&marker);
    });
}

#[test]
fn dropping_a_pool_and_its_last_result_terminates_its_workers() {
    watchdog("dropping_a_pool_terminates", 60, || {
        let pool = pool(2);
        let pids: Vec<u32> = pool.map_async_with(pid, 0..20, Options::new().chunksize(1)).unwrap().get().unwrap();
        let pending = pool.apply_async(sleep_ms, (30_000,)).unwrap();
        drop(pool);
        // The result holds the pool: the workers still run.
        assert!(!pending.ready());
        for &pid in &pids {
            assert!(!wait_for_exit_of(pid as i32, 0), "worker {pid} ended while a result held the pool");
        }
        drop(pending);
        for pid in pids {
            assert!(wait_for_exit_of(pid as i32, 10), "worker {pid} still runs");
        }
    });
}

/// The example: the iterator outlives the function that made the pool.
fn squares() -> multiproc::Result<multiproc::pool::Imap<u64>> {
    let pool = Pool::new(2)?;
    pool.imap(square, 0..20)
}

#[test]
fn results_outlive_the_pool_handle() {
    watchdog("results_outlive_the_pool_handle", 60, || {
        let values: Vec<u64> = squares().unwrap().map(Result::unwrap).collect();
        assert_eq!(values, (0..20).map(|x| x * x).collect::<Vec<_>>());
        let (single, mapped) = {
            let pool = pool(2);
            (pool.apply_async(sleep_ms, (50,)).unwrap(), pool.map_async(square, 0..10).unwrap())
        };
        assert_eq!(single.get().unwrap(), 50);
        assert_eq!(mapped.get().unwrap()[9], 81);
        // A future from a dropped executor, awaited later.
        let future = Executor::new(1).unwrap().submit(square, (6,)).unwrap();
        assert_eq!(block_on(future).unwrap(), 36);
        // The thread pool too.
        let threaded = {
            let pool = ThreadPool::new(2).unwrap();
            pool.imap(|x: u64| x + 1, 0..5).unwrap()
        };
        assert_eq!(threaded.map(Result::unwrap).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        let late = {
            let pool = ThreadPool::new(1).unwrap();
            pool.apply_async(|| {
                std::thread::sleep(Duration::from_millis(50));
                7u32
            })
            .unwrap()
        };
        assert_eq!(late.get().unwrap(), 7);
    });
}

#[test]
fn terminate_fails_results_that_hold_the_pool() {
    watchdog("terminate_fails_results_that_hold_the_pool", 60, || {
        let pool = pool(1);
        let pending = pool.apply_async(sleep_ms, (30_000,)).unwrap();
        let queued = pool.imap(sleep_ms, vec![30_000, 30_000]).unwrap();
        pool.terminate();
        drop(pool);
        assert!(matches!(pending.get(), Err(Error::PoolTerminated)));
        assert!(queued.map(|r| r.unwrap_err()).all(|e| matches!(e, Error::PoolTerminated)));
    });
}

#[test]
fn descriptors_travel_in_task_arguments() {
    watchdog("descriptors_travel", 60, || {
        let pool = pool(2);
        let (inbox, outbox) = channel();
        let sent = pool.apply(echo_to, (outbox, "through a pool".to_string())).unwrap();
        assert_eq!(sent, 14);
        assert_eq!(inbox.recv(10), "through a pool");
    });
}

#[test]
fn spawn_start_method_works() {
    watchdog("spawn_start_method", 60, || {
        let pool = Pool::builder().processes(2).context(&multiproc::get_context("spawn").unwrap()).build().unwrap();
        assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
    });
}

#[test]
fn async_result_is_a_future() {
    watchdog("async_result_is_a_future", 60, || {
        let pool = pool(2);
        let future = pool.apply_async(square, (12,)).unwrap();
        assert_eq!(block_on(future).unwrap(), 144);
    });
}

/// A minimal executor: polls on this thread, parks until woken.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

#[test]
fn thread_pool_runs_capturing_closures() {
    watchdog("thread_pool", 60, || {
        let pool = ThreadPool::new(4).unwrap();
        let base = 100u64;
        assert_eq!(pool.map(move |x: u64| x + base, 0..5).unwrap(), vec![100, 101, 102, 103, 104]);
        let text = String::from("captured");
        assert_eq!(pool.apply(move || text.len()).unwrap(), 8);
        match pool.apply(|| -> Result<u32, String> { Err("no luck".into()) }) {
            Err(Error::TaskFailed { message, .. }) => assert_eq!(message, "no luck"),
            other => panic!("expected a task failure, got {other:?}"),
        }
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let panicked = pool.apply(|| -> u32 { panic!("thread task panics") });
        std::panic::set_hook(hook);
        assert!(matches!(panicked, Err(Error::TaskFailed { message, .. }) if message.contains("thread task panics")));
        let ordered: Vec<u64> = pool.imap(|x: u64| x * 2, 0..50).unwrap().map(Result::unwrap).collect();
        assert_eq!(ordered, (0..50).map(|x| x * 2).collect::<Vec<_>>());
        let mut unordered: Vec<u64> = pool.imap_unordered(|x: u64| x * 2, 0..50).unwrap().map(Result::unwrap).collect();
        unordered.sort();
        assert_eq!(unordered, ordered);
        assert!(pool.stats().tasks_done >= 106);
        pool.close();
        assert!(matches!(pool.apply(|| 1u8), Err(Error::InvalidState(_))));
        pool.join().unwrap();
    });
}

#[test]
fn executor_submit_map_and_shutdown() {
    watchdog("executor", 60, || {
        let mut executor = Executor::new(1).unwrap();
        assert_eq!(executor.submit(square, (11,)).unwrap().get().unwrap(), 121);
        let values: Vec<u64> = executor.map(square, 0..5).unwrap().map(Result::unwrap).collect();
        assert_eq!(values, [0, 1, 4, 9, 16]);
        let running = executor.submit(sleep_ms, (300,)).unwrap();
        // The first task is handed to the worker before the rest queue behind it.
        while !running.running() {
            std::thread::yield_now();
        }
        let queued: Vec<_> = (0..5).map(|_| executor.submit(sleep_ms, (300,)).unwrap()).collect();
        executor.shutdown(true, true).unwrap();
        assert_eq!(running.get().unwrap(), 300);
        // The worker may hold one more task ahead (its window); every other one is cancelled.
        let outcomes: Vec<_> = queued.into_iter().map(|f| f.get()).collect();
        let cancelled = outcomes.iter().filter(|o| matches!(o, Err(Error::Cancelled))).count();
        assert!(cancelled >= 4, "{outcomes:?}");
        assert!(outcomes.iter().all(|o| matches!(o, Ok(300) | Err(Error::Cancelled))), "{outcomes:?}");
        assert!(matches!(executor.submit(square, (1,)), Err(Error::InvalidState(_))));
    });
}

#[test]
fn a_cancelled_result_is_not_run() {
    watchdog("cancelled_result", 60, || {
        let pool = pool(1);
        let busy = pool.apply_async(sleep_ms, (200,)).unwrap();
        let later = pool.apply_async(sleep_ms, (200,)).unwrap();
        let last = pool.apply_async(sleep_ms, (200,)).unwrap();
        let cancelled = last.cancel();
        assert_eq!(busy.get().unwrap(), 200);
        assert_eq!(later.get().unwrap(), 200);
        if cancelled {
            assert!(last.cancelled());
            assert!(matches!(last.get(), Err(Error::Cancelled)));
        }
    });
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<ThreadPool>();
    send_sync::<Executor>();
    send_sync::<multiproc::AsyncResult<Vec<String>>>();
    fn send<T: Send>() {}
    send::<multiproc::pool::Imap<u64>>();
}

fn pool_in_child(outbox: Outbox) {
    let pool = Pool::new(2).expect("pool in a child");
    let sum: u64 = pool.map(square, 0..10).expect("map").iter().sum();
    send(&outbox, &sum.to_string());
}

#[test]
fn a_pool_works_inside_a_child_process() {
    watchdog("pool_in_child", 60, || {
        let (inbox, outbox) = channel();
        let mut child = multiproc::Process::new(pool_in_child, (outbox,)).with_daemon(false);
        child.start().unwrap();
        assert_eq!(inbox.recv(30), "285");
        assert_eq!(child.join().unwrap(), 0);
    });
}

#[test]
fn a_pool_shared_by_threads() {
    watchdog("pool_shared_by_threads", 60, || {
        let pool = Arc::new(pool(2));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || pool.map(square, t * 100..(t + 1) * 100).unwrap())
            })
            .collect();
        let all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert_eq!(all, (0..400).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(pool.stats().tasks_done, 400);
    });
}

#[cfg(feature = "progress")]
#[test]
fn progress_bars_do_not_change_results() {
    watchdog("progress_bars", 60, || {
        let pool = pool(2);
        let values = pool.map_async_with(square, 0..200, Options::new().progress(true)).unwrap().get().unwrap();
        assert_eq!(values.len(), 200);
        let streamed: Vec<u64> =
            pool.imap_with(square, 0..50, Options::new().progress(true)).unwrap().map(Result::unwrap).collect();
        assert_eq!(streamed.len(), 50);
    });
}

#[test]
fn repeated_kills_during_a_map_lose_no_other_task() {
    watchdog("repeated_kills", 90, || {
        let pool = pool(3);
        let map = pool.map_async_with(sleep_ms, vec![2; 300], Options::new().chunksize(1)).unwrap();
        let (inbox, outbox) = channel();
        for round in 0..5 {
            let victim = pool.apply_async(report_pid_and_hang, (Handle::new(outbox.try_clone().unwrap()),)).unwrap();
            let pid: i32 = inbox.recv(30).parse().unwrap();
            sigkill(pid);
            assert!(matches!(victim.get(), Err(Error::WorkerDied { .. })), "round {round}");
        }
        assert_eq!(map.get().unwrap(), vec![2; 300]);
        let stats = pool.stats();
        assert_eq!(stats.workers_restarted, 5);
        assert_eq!(stats.tasks_failed, 5);
        assert_eq!(stats.tasks_done, 300);
    });
}

/// A result type of the test's own: a `TaskValue` by one line; its encoding fails in the worker.
#[derive(Debug, Deserialize)]
struct RefusesToTravel;

impl Serialize for RefusesToTravel {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this result refuses to be encoded"))
    }
}

impl multiproc::pool::TaskValue for RefusesToTravel {}

fn unencodable_result() -> RefusesToTravel {
    RefusesToTravel
}

#[test]
fn unencodable_results_fail_without_losing_workers() {
    watchdog("unencodable_results", 60, || {
        let pool = pool(2);
        for _ in 0..20 {
            match pool.apply(unencodable_result, ()) {
                Err(Error::TaskFailed { message, .. }) => {
                    assert!(message.contains("could not encode the task's result"), "{message}")
                }
                other => panic!("expected a task failure, got {other:?}"),
            }
        }
        assert_eq!(pool.stats().workers_restarted, 0);
        assert_eq!(pool.stats().workers_started, 2);
    });
}

#[test]
fn max_tasks_per_child_three_with_one_worker() {
    watchdog("max_tasks_three", 60, || {
        let pool = Pool::builder().processes(1).max_tasks_per_child(3).build().unwrap();
        let pids: Vec<u32> = (0..4).map(|i| pool.apply(pid, (i,)).unwrap()).collect();
        assert_eq!((pids[0], pids[1]), (pids[2], pids[2]));
        assert_ne!(pids[3], pids[0]);
        assert_eq!(pool.stats().workers_started, 2);
    });
}

#[test]
fn executor_shutdown_without_waiting_lets_tasks_finish() {
    watchdog("executor_shutdown_nowait", 60, || {
        let mut executor = Executor::new(2).unwrap();
        let futures: Vec<_> = (0..4).map(|_| executor.submit(sleep_ms, (50,)).unwrap()).collect();
        let pids: Vec<u32> = (0..2).map(|i| executor.submit(pid, (i,)).unwrap().get().unwrap()).collect();
        executor.shutdown(false, false).unwrap();
        for future in futures {
            assert_eq!(future.get().unwrap(), 50);
        }
        for pid in pids {
            assert!(wait_for_exit_of(pid as i32, 10), "worker {pid} still runs after shutdown");
        }
    });
}

#[test]
fn a_callback_that_waits_on_its_pool_gets_an_error_not_a_hang() {
    watchdog("callback_waits_on_pool", 60, || {
        let pool = Arc::new(pool(2));
        let inner = Arc::clone(&pool);
        let seen: Arc<Mutex<Option<String>>> = Arc::default();
        let record = Arc::clone(&seen);
        let options = Options::new().callback(move |_: &u64| {
            let nested = inner.apply(square, (2,));
            *record.lock().unwrap() = Some(format!("{nested:?}"));
        });
        assert_eq!(pool.apply_async_with(square, (3,), options).unwrap().get().unwrap(), 9);
        let seen = seen.lock().unwrap().clone().unwrap();
        assert!(seen.contains("InvalidState"), "{seen}");
        assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
    });
}

#[test]
fn a_callback_holding_the_last_handle_does_not_deadlock() {
    watchdog("callback_holds_last_handle", 60, || {
        let pool = Arc::new(pool(1));
        let inner = Arc::clone(&pool);
        let result =
            pool.apply_async_with(sleep_ms, (100,), Options::new().callback(move |_: &u64| drop(inner))).unwrap();
        drop(pool);
        assert_eq!(result.get().unwrap(), 100);
    });
}

/// Counts `pool.task` spans (a minimal global subscriber: the scheduler thread opens them).
struct SpanCounter(Arc<AtomicUsize>);

impl tracing::Subscriber for SpanCounter {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.name() == "pool.task"
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if attrs.metadata().name() == "pool.task" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn each_task_has_a_tracing_span() {
    watchdog("tracing_spans", 60, || {
        let spans = Arc::new(AtomicUsize::new(0));
        tracing::subscriber::set_global_default(SpanCounter(Arc::clone(&spans))).expect("the only global subscriber");
        let before = spans.load(Ordering::SeqCst);
        let pool = pool(2);
        pool.map_async_with(square, 0..10, Options::new().chunksize(1)).unwrap().get().unwrap();
        assert!(spans.load(Ordering::SeqCst) - before >= 10);
    });
}

#[test]
fn a_worker_killed_while_idle_fails_nothing() {
    watchdog("idle_worker_killed", 60, || {
        let pool = pool(2);
        let mut pids: Vec<u32> = pool.map_async_with(pid, 0..20, Options::new().chunksize(1)).unwrap().get().unwrap();
        pids.sort();
        pids.dedup();
        let victim = pids[0] as i32;
        sigkill(victim);
        assert!(wait_for_exit_of(victim, 10));
        let values = pool.map_async_with(square, 0..200, Options::new().chunksize(1)).unwrap().get().unwrap();
        assert_eq!(values.len(), 200);
        let stats = pool.stats();
        assert_eq!(stats.tasks_failed, 0);
        assert_eq!(stats.workers_restarted, 1);
    });
}

fn hang_on(n: u64) -> u64 {
    if n == 5 {
        std::thread::sleep(Duration::from_secs(60));
    }
    n
}

#[test]
fn a_hung_item_times_out_in_map_and_imap() {
    watchdog("hung_item_in_map", 60, || {
        let pool = Pool::builder().processes(2).task_timeout(Duration::from_millis(200)).build().unwrap();
        let map = pool.map_async_with(hang_on, 0..10, Options::new().chunksize(1)).unwrap();
        assert!(matches!(map.get(), Err(Error::TaskTimedOut(_))));
        let out: Vec<_> = pool.imap(hang_on, 0..10).unwrap().collect();
        assert!(matches!(out[5], Err(Error::TaskTimedOut(_))));
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 9);
        assert_eq!(pool.stats().workers_restarted, 2);
    });
}

fn key_error(key: String) -> Result<u32, String> {
    Err(format!("KeyError: {key:?}"))
}

#[test]
fn apply_async_error_callback_gets_the_error() {
    // PWE-01: `get` fails with the task's error, and the error callback saw the same error
    // (and the success callback did not run).
    watchdog("apply_async_error_callback", 60, || {
        let pool = pool(1);
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (ok, err) = (Arc::clone(&seen), Arc::clone(&seen));
        let options = Options::new()
            .callback(move |v: &u32| ok.lock().unwrap().push(format!("callback {v}")))
            .error_callback(move |e| err.lock().unwrap().push(e.to_string()));
        let result = pool.apply_async_with(key_error, ("missing".to_string(),), options).unwrap();
        let error = result.get().unwrap_err();
        assert!(
            matches!(&error, Error::TaskFailed { message, .. } if message.contains("KeyError: \"missing\"")),
            "{error}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(*seen, [error.to_string()]);
    });
}

#[test]
fn a_terminated_pool_refuses_work() {
    // POOL-23 (CPython: `with pool:` on a pool a previous `with` terminated raises ValueError).
    watchdog("a_terminated_pool_refuses_work", 60, || {
        let pool = pool(1);
        assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
        pool.terminate();
        pool.join().unwrap();
        assert!(matches!(pool.apply_async(square, (1,)), Err(Error::InvalidState(_))));
        assert!(matches!(pool.map(square, 0..3), Err(Error::InvalidState(_))));
    });
}

#[test]
fn timeouts_too_far_away_for_the_clock_are_no_limit() {
    watchdog("pool_timeouts_too_far_away", 60, || {
        let pool = Pool::builder().processes(1).task_timeout(Duration::MAX).build().unwrap();
        assert_eq!(pool.apply(square, (7,)).unwrap(), 49);
        let r = pool.apply_async_with(square, (8,), Options::new().timeout(Duration::MAX)).unwrap();
        assert_eq!(r.get_timeout(Duration::MAX).unwrap(), 64);
    });
}

/// Serializes for the first two workers' initializers, then refuses: the third worker of a pool
/// cannot start.
#[derive(Deserialize)]
struct TwoTickets;

static TICKETS_USED: AtomicUsize = AtomicUsize::new(0);

impl Serialize for TwoTickets {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if TICKETS_USED.fetch_add(1, Ordering::SeqCst) >= 2 {
            return Err(serde::ser::Error::custom("no tickets left"));
        }
        serializer.serialize_unit_struct("TwoTickets")
    }
}

/// Keeps `alive` open for as long as the worker lives.
fn hold_until_death(_: TwoTickets, alive: Handle<std::os::fd::OwnedFd>) {
    std::mem::forget(alive);
}

/// POOL-26: a worker that cannot start fails the pool's construction with that error, and the
/// workers started before it are killed (the descriptor each one holds reaches end of file) and
/// reaped (no child of this thread is left).
#[test]
fn a_worker_failing_to_start_fails_the_pool_and_stops_the_others() {
    watchdog("a_worker_failing_to_start", 60, || {
        let (read, write) = std::io::pipe().unwrap();
        let alive = Handle::new(std::os::fd::OwnedFd::from(write));
        let built = Pool::builder()
            .processes(4)
            .start_method(StartMethod::Spawn)
            .initializer(hold_until_death, (TwoTickets, alive))
            .build();
        match built {
            Err(error) => assert!(error.to_string().contains("Serialize implementation returned an error"), "{error}"),
            Ok(_) => panic!("a pool whose third worker cannot start was built"),
        }
        assert_eq!(TICKETS_USED.load(Ordering::SeqCst), 3, "two workers started, the third failed");
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut { read }, &mut rest).unwrap();
        assert!(rest.is_empty(), "end of file: no started worker still holds the descriptor");
        let children = std::fs::read_to_string("/proc/thread-self/children").unwrap();
        assert_eq!(children.trim(), "", "the started workers are reaped");
    });
}
