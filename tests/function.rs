//! Functions as values (`Function`): on a queue to worker processes (CPython's `mp_workers.py`),
//! as a pool task's argument (CPython's `mp_pool.py`), over a connection; checked on arrival.

mod common;

use std::collections::BTreeSet;

use common::watchdog;
use multiproc::pool::Pool;
use multiproc::{Connection, Error, Function, Process, Queue, current_process};

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn plus(a: u64, b: u64) -> u64 {
    a + b
}

fn shout(text: String) -> String {
    text.to_uppercase()
}

type Task = Option<(Function<(u64, u64), u64>, (u64, u64))>;

fn calculate(func: Function<(u64, u64), u64>, args: (u64, u64)) -> String {
    format!("{} says that {}{:?} = {}", current_process().name(), func.name(), args, func.call(args))
}

fn worker(input: Queue<Task>, output: Queue<String>) -> multiproc::Result<()> {
    while let Some((func, args)) = input.get()? {
        output.put(calculate(func, args))?;
    }
    Ok(())
}

/// The tail of a result line, without the worker's name.
fn what(line: &str) -> String {
    line.split_once(" says that ").map(|(_, rest)| rest.to_string()).unwrap_or_default()
}

#[test]
fn functions_travel_on_a_queue_to_worker_processes() {
    // CPython's mp_workers.py: `(mul, (i, 7))` and `(plus, (i, 8))` on a task queue.
    watchdog("functions_travel_on_a_queue", 60, || {
        let tasks: Queue<Task> = Queue::new().unwrap();
        let done: Queue<String> = Queue::new().unwrap();
        for i in 0..20 {
            tasks.put(Some((Function::new(mul), (i, 7)))).unwrap();
        }
        let mut workers: Vec<Process> = (0..3)
            .map(|_| {
                let mut p = Process::new(worker, (tasks.clone(), done.clone()));
                p.start().unwrap();
                p
            })
            .collect();
        for i in 0..10 {
            tasks.put(Some((Function::new(plus), (i, 8)))).unwrap();
        }
        let lines: Vec<String> = (0..30).map(|_| done.get().unwrap()).collect();
        assert!(lines.iter().all(|line| line.starts_with("Process-")), "{lines:?}");
        let got: BTreeSet<String> = lines.iter().map(|line| what(line)).collect();
        let expected: BTreeSet<String> = (0..20u64)
            .map(|i| format!("mul({i}, 7) = {}", i * 7))
            .chain((0..10u64).map(|i| format!("plus({i}, 8) = {}", i + 8)))
            .collect();
        assert_eq!(got, expected);
        for _ in &workers {
            tasks.put(None).unwrap();
        }
        for p in &mut workers {
            p.join().unwrap();
            assert_eq!(p.exitcode(), Some(0));
        }
    });
}

#[test]
fn functions_as_pool_task_arguments() {
    // CPython's mp_pool.py: `pool.map(calculatestar, [(mul, (i, 7)), ...])`.
    watchdog("functions_as_pool_task_arguments", 60, || {
        let pool = Pool::new(2).unwrap();
        let tasks: Vec<_> = (0..10u64)
            .map(|i| (Function::new(mul), (i, 7)))
            .chain((0..10u64).map(|i| (Function::new(plus), (i, 8))))
            .collect();
        let lines = pool.starmap(calculate, tasks).unwrap();
        assert_eq!(what(&lines[3]), "mul(3, 7) = 21");
        assert_eq!(what(&lines[13]), "plus(3, 8) = 11");
        assert!(lines[0].starts_with("ForkServerPoolWorker-"), "{}", lines[0]);
    });
}

fn call_what_comes(mut conn: Connection) -> multiproc::Result<()> {
    let (f, text): (Function<(String,), String>, String) = conn.recv()?;
    conn.send(&f.call((text,)))?;
    // A handle of the wrong signature is refused on arrival, with both types named.
    let refused = conn.recv::<Function<(String,), String>>();
    conn.send(&refused.map(|_| ()).map_err(|e| e.to_string()))?;
    Ok(())
}

#[test]
fn functions_travel_over_a_connection_and_are_checked_on_arrival() {
    watchdog("functions_over_a_connection", 60, || {
        let (mut ours, theirs) = multiproc::pipe().unwrap();
        let mut child = Process::new(call_what_comes, (theirs,));
        child.start().unwrap();
        ours.send(&(Function::new(shout), "quiet".to_string())).unwrap();
        assert_eq!(ours.recv::<String>().unwrap(), "QUIET");
        ours.send(&Function::new(mul)).unwrap();
        let refused: Result<(), String> = ours.recv().unwrap();
        let message = refused.unwrap_err();
        assert!(
            message.contains("fn((alloc::string::String,))") && message.contains("fn((u64, u64)) -> u64"),
            "{message}"
        );
        child.join().unwrap();
        assert_eq!(child.exitcode(), Some(0));
    });
}

#[test]
fn a_handle_of_another_type_is_refused_instead_of_called() {
    watchdog("a_handle_of_another_type_on_a_queue", 60, || {
        let queue: Queue<Function<(String,), String>> = Queue::new().unwrap();
        queue.put(Function::new(shout)).unwrap();
        assert_eq!(queue.get().unwrap().call(("a".into(),)), "A");
        // The same queue's bytes, read as another function type (a sender of another program
        // version, say): refused.
        let (mut a, mut b) = multiproc::pipe().unwrap();
        a.send(&Function::new(shout)).unwrap();
        match b.recv::<Function<(u64, u64), u64>>() {
            Err(Error::Codec { detail, .. }) => assert!(detail.contains("was expected"), "{detail}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
}
