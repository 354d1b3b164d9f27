// mode: check
// expect: cannot run in a process pool's worker
// expect: captures nothing
// expect: ThreadPool
// reject: String: Copy
use multiproc::pool::Pool;

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let prefix = String::from("item ");
    let labels = pool.map(move |x: u64| format!("{prefix}{x}"), 0..4)?;
    println!("{labels:?}");
    Ok(())
}
