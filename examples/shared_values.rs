//! Value('d', 10.0) set to 10.78 by a child.
//!
//! Ported from Python:
//!
//! - `Value('d', 10.0)` set to 10.78 by a child. The type code is the Rust type (`f64`).
//! - `Array('i', [1, 2, 3, 4, 5])`, `num[2] = 9999` in a child.
//!
//! Run it with `cargo run --example shared_values`; the `tour` example runs it too.

use multiproc::{Array, Process, Value};

/// The child's side of `Value('d', 10.0)`: `num.value = 10.78`.
fn set_value(num: Value<f64>) {
    num.set(10.78).expect("no holder of the lock died");
}

/// `num = Value('d', 10.0)`; a child sets it to 10.78; the parent prints the new value.
pub fn value_set_by_child() -> multiproc::Result<()> {
    let num = Value::new(10.0f64)?;
    let mut child = Process::new(set_value, (num.clone(),));
    child.start()?;
    child.join()?;
    println!("   num.value = {}", num.get()?);
    assert_eq!(num.get()?, 10.78);
    Ok(())
}

/// The child's side of `Array('i', [1, 2, 3, 4, 5])`: `num[2] = 9999`.
fn set_element(num: Array<i32>) {
    num.set(2, 9999).expect("index 2 exists");
}

/// `num = Array('i', [1, 2, 3, 4, 5])`; a child sets `num[2] = 9999`; the parent prints `num[:]`.
pub fn array_set_by_child() -> multiproc::Result<()> {
    let num = Array::from_slice(&[1i32, 2, 3, 4, 5])?;
    let mut child = Process::new(set_element, (num.clone(),));
    child.start()?;
    child.join()?;
    println!("   num[:] = {:?}", num.to_vec()?);
    assert_eq!(num.to_vec()?, [1, 2, 9999, 4, 5]);
    Ok(())
}

fn main() -> multiproc::Result<()> {
    value_set_by_child()?;
    array_set_by_child()
}
