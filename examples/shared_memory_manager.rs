//! SharedMemoryManager: ShareableList(range(2000)) summed by two workers, one half each.
//!
//! Ported from Python:
//!
//! - `with SharedMemoryManager() as smm`, `ShareableList(range(2000))`, `do_work` by two processes,
//!   `sum(sl)`. The original never defines `do_work`: here each worker sums its half into its first
//!   slot (with the manager) or squares its half (without).
//!
//! Run it with `cargo run --example shared_memory_manager`; the `tour` example runs it too.

use multiproc::manager::SharedMemoryManager;
use multiproc::shm::Item;
use multiproc::{Process, ShareableList};

/// One worker's half: sums `sl[start..end]` into `sl[start]` and zeroes the rest of its half, so
/// that the sum of the whole list is the total (the partial results stay in `sl`).
fn sum_half(sl: ShareableList, start: usize, end: usize) -> multiproc::Result<()> {
    let mut sum = 0;
    for i in start..end {
        if let Item::Int(x) = sl.get(i as isize)? {
            sum += x;
        }
        sl.set(i as isize, 0)?;
    }
    sl.set(start as isize, sum)
}

/// `with SharedMemoryManager() as smm: sl = smm.ShareableList(range(2000))`, two worker
/// processes doing one half each, then `sum(sl)`; the manager unlinks the list's block when it
/// goes.
pub fn shared_memory_manager_two_halves() -> multiproc::Result<()> {
    let smm = SharedMemoryManager::start()?;
    let sl = smm.shareable_list(0..2000)?;
    let mut p1 = Process::new(sum_half, (sl.clone(), 0, 1000));
    let mut p2 = Process::new(sum_half, (sl.clone(), 1000, 2000));
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    let total: i64 = sl.to_vec()?.iter().map(|item| if let Item::Int(x) = item { *x } else { 0 }).sum();
    println!("  partial sums: sl[0] = {}, sl[1000] = {}; sum(sl) = {total}", sl.get(0)?, sl.get(1000)?);
    assert_eq!(total, (0..2000).sum::<i64>());
    let name = sl.name().to_owned();
    drop(smm);
    println!("  after the manager: {name} attachable? {}", ShareableList::attach(&name).is_ok());
    Ok(())
}

fn main() -> multiproc::Result<()> {
    shared_memory_manager_two_halves()
}
