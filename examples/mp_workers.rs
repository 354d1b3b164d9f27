//! CPython's documentation example "how to use queues to feed tasks to a collection of worker
//! processes and collect the results" (`mp_workers.py`), ported: the tasks are `(mul, (i, 7))`
//! and `(plus, (i, 8))` pairs, functions as values ([`Function`]) on a queue.
//!
//! Run it with `cargo run --example mp_workers`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Function, Process, Queue, current_process};

/// A binary function as a value, with its arguments; `None` is CPython's `'STOP'`.
type Task = Option<(Function<(u64, u64), u64>, (u64, u64))>;

/// Runs the tasks it is given until `None` (CPython `for func, args in iter(input.get, 'STOP')`).
fn worker(input: Queue<Task>, output: Queue<String>) -> multiproc::Result<()> {
    while let Some((func, args)) = input.get()? {
        output.put(calculate(func, args))?;
    }
    Ok(())
}

fn calculate(func: Function<(u64, u64), u64>, args: (u64, u64)) -> String {
    let result = func.call(args);
    format!("{} says that {}{:?} = {}", current_process().name(), func.name(), args, result)
}

/// A short pause that varies with the arguments (CPython: `time.sleep(0.5 * random.random())`).
fn pause(a: u64, b: u64) {
    std::thread::sleep(Duration::from_millis((a * 7919 + b * 104_729) % 5));
}

fn mul(a: u64, b: u64) -> u64 {
    pause(a, b);
    a * b
}

fn plus(a: u64, b: u64) -> u64 {
    pause(a, b);
    a + b
}

/// Twenty `mul` tasks on a queue before four workers start, their results, ten `plus` tasks put
/// while the workers run, their results, then one stop sign per worker.
pub fn feed_workers() -> multiproc::Result<()> {
    const NUMBER_OF_PROCESSES: usize = 4;
    let tasks1: Vec<Task> = (0..20).map(|i| Some((Function::new(mul), (i, 7)))).collect();
    let tasks2: Vec<Task> = (0..10).map(|i| Some((Function::new(plus), (i, 8)))).collect();

    // Create queues
    let task_queue: Queue<Task> = Queue::new()?;
    let done_queue: Queue<String> = Queue::new()?;

    // Submit tasks
    for task in &tasks1 {
        task_queue.put(*task)?;
    }

    // Start worker processes
    let mut workers = Vec::new();
    for _ in 0..NUMBER_OF_PROCESSES {
        let mut p = Process::new(worker, (task_queue.clone(), done_queue.clone()));
        p.start()?;
        workers.push(p);
    }

    // Get and print results
    println!("Unordered results:");
    for _ in 0..tasks1.len() {
        println!("\t{}", done_queue.get()?);
    }

    // Add more tasks using `put()`
    for task in &tasks2 {
        task_queue.put(*task)?;
    }

    // Get and print some more results
    for _ in 0..tasks2.len() {
        println!("\t{}", done_queue.get()?);
    }

    // Tell child processes to stop
    for _ in 0..NUMBER_OF_PROCESSES {
        task_queue.put(None)?;
    }
    for mut p in workers {
        p.join()?;
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    feed_workers()
}
