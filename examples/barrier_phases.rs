//! Barrier: four worker processes in three phases.
//!
//! Run it with `cargo run --example barrier_phases`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Barrier, Process, Queue};

/// The next `n` reports that children put on `reports`, in the order they were put: at most 10
/// s each, so that a child that never reports fails the example instead of hanging it.
fn recv_n(reports: &Queue<String>, n: usize) -> multiproc::Result<Vec<String>> {
    (0..n).map(|_| reports.get_timeout(Duration::from_secs(10))).collect()
}

const WORKERS: u32 = 4;

const PHASES: u32 = 3;

fn phased_worker(i: u32, barrier: Barrier, log: Queue<String>) -> multiproc::Result<()> {
    let mut value = u64::from(i) + 1;
    for phase in 0..PHASES {
        sleep_ms(random_in(0, 6)); // uneven work
        value = value * value + 1;
        println!("  worker {i} finished phase {phase} (value {value})");
        log.put(phase.to_string())?;
        let arrival = barrier.wait()?;
        if arrival == WORKERS - 1 {
            println!("  worker {i} arrived last at barrier {phase}: all four move on");
        }
    }
    Ok(())
}

/// Four worker processes compute in three phases and wait for each other at a [`Barrier`] between
/// phases: no worker starts phase k + 1 before all have finished phase k. Then a lone party's
/// `wait_timeout` breaks a barrier.
pub fn barrier_phases() -> multiproc::Result<()> {
    let barrier = Barrier::new(WORKERS)?;
    let reports = Queue::new()?;
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        workers.push(Process::new(phased_worker, (i, barrier.clone(), reports.clone())));
    }
    start_all(&mut workers)?;
    let phases = recv_n(&reports, (WORKERS * PHASES) as usize)?.concat();
    join_all(&mut workers)?;
    // A phase's reports are sent before its barrier, the next phase's after it.
    let mut sorted: Vec<char> = phases.chars().collect();
    sorted.sort_unstable();
    assert_eq!(phases, sorted.into_iter().collect::<String>(), "a worker ran ahead of the barrier");
    println!("  phase of each report, in arrival order: {phases}");

    let lonely = Barrier::new(2)?;
    match lonely.wait_timeout(Duration::from_millis(10)) {
        Err(multiproc::Error::BrokenBarrier) => {
            println!("  one party of two waited 10 ms alone: the barrier broke (broken: {})", lonely.broken())
        }
        other => panic!("expected a broken barrier, got {other:?}"),
    }
    Ok(())
}

/// Stands in for the seconds the Python original sleeps to simulate work.
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A random number in `low..=high` (the originals' `random.randint`).
fn random_in(low: u64, high: u64) -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    low + u64::from_ne_bytes(bytes) % (high - low + 1)
}

/// Starts one process per target, in order.
fn start_all(children: &mut [Process]) -> multiproc::Result<()> {
    children.iter_mut().try_for_each(Process::start)
}

/// Joins every child and checks that each exited with 0.
fn join_all(children: &mut [Process]) -> multiproc::Result<()> {
    for child in children {
        let code = child.join()?;
        assert_eq!(code, 0, "{child} failed");
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    barrier_phases()
}
