// mode: check-pass
// The fixes the other cases point to compile: owned arguments, a 6-tuple (and 16-tuple) result,
// a foreign type returned through `Result<T, Infallible>`, data passed as arguments.
use std::convert::Infallible;

use multiproc::pool::{Pool, ThreadPool};
use multiproc::{Function, Process};

fn greet(name: String) {
    println!("hello, {name}");
}

fn stats(x: u64) -> (u64, u64, u64, u64, u64, u64) {
    (x, x + 1, x + 2, x + 3, x + 4, x + 5)
}

#[allow(clippy::type_complexity)]
fn wide(x: u8) -> (u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8) {
    (x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x)
}

fn when(_: u64) -> Result<std::time::SystemTime, Infallible> {
    Ok(std::time::SystemTime::now())
}

fn add(x: u64, offset: u64) -> u64 {
    x + offset
}

fn main() -> multiproc::Result<()> {
    let mut p = Process::new(greet, ("world".to_string(),));
    p.start()?;
    p.join()?;
    let pool = Pool::new(2)?;
    println!("{:?}", pool.map(stats, 0..2)?);
    println!("{}", pool.map(wide, 0..2u8)?.len());
    println!("{:?}", pool.map(when, 0..2)?);
    let offset = 10;
    println!("{:?}", pool.starmap(add, (0..4).map(|x| (x, offset)))?);
    println!("{:?}", ThreadPool::new(2)?.map(move |x: u64| x + offset, 0..4)?);
    println!("{}", Function::new(add).call((1, 2)));
    Ok(())
}
