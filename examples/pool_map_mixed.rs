//! Pool(5).map(func, [(1, 2), 'alex']).
//!
//! Ported from Python:
//!
//! - `Pool(5).map(func, [(1, 2), 'alex'])` (commented: `map(func, range(100))` against 100
//!   processes). A Rust list has one item type: the items are `manager::Value`s (a tuple and a
//!   string).
//!
//! Run it with `cargo run --example pool_map_mixed`; the `tour` example runs it too.

use multiproc::pool::Pool;

fn print_item(n: multiproc::manager::Value) {
    println!("  worker {}: {n}", std::process::id());
}

/// `Pool(5).map(func, [(1, 2), 'alex'])`: `map` takes one iterable, each item one
/// task. Python's list mixes a tuple and a string; in Rust the items share one type, here the
/// dynamically typed `manager::Value` (an enum would do as well).
pub fn map_over_mixed_items() -> multiproc::Result<()> {
    use multiproc::manager::Value;
    let pool = Pool::new(5)?;
    let items = vec![Value::Tuple(vec![1.into(), 2.into()]), Value::from("alex")];
    pool.map(print_item, items)?;
    Ok(())
}

fn main() -> multiproc::Result<()> {
    map_over_mixed_items()
}
