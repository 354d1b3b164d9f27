// mode: build
// expect: a process-pool task must be a fn item or a closure that captures nothing
// expect: ThreadPool
// expect: pool_map_captures_offset.rs:11
// reject: Process::fork
use multiproc::pool::Pool;

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let offset = 10u64;
    let shifted = pool.map(move |x: u64| x + offset, 0..4)?;
    println!("{shifted:?}");
    Ok(())
}
