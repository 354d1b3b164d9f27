// mode: check
// expect: `Point` is not a task result type
// expect: impl multiproc::pool::TaskValue for Point
// expect: Infallible
use multiproc::pool::Pool;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

fn diagonal(i: i64) -> Point {
    Point { x: i, y: i }
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let points = pool.map(diagonal, 0..4)?;
    println!("{points:?}");
    Ok(())
}
