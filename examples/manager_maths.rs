//! A custom manager serving MathsClass: add and mul.
//!
//! Ported from Python:
//!
//! - `MyManager.register('Maths', MathsClass)`, `add(4, 3)`, `mul(7, 8)`. `#[multiproc::managed]`
//!   on the `impl`.
//!
//! Run it with `cargo run --example manager_maths`; the `tour` example runs it too.

use multiproc::BaseManager;
use serde::{Deserialize, Serialize};

/// The original's MathsClass, registered with a custom manager.
#[derive(Default, Serialize, Deserialize)]
pub struct MathsClass;

#[multiproc::managed]
impl MathsClass {
    /// `x + y`, computed in the manager's server.
    pub fn add(&self, x: i64, y: i64) -> i64 {
        x + y
    }

    /// `x * y`, computed in the manager's server.
    pub fn mul(&self, x: i64, y: i64) -> i64 {
        x * y
    }
}

/// `MyManager.register('Maths', MathsClass)`, then `maths.add(4, 3)` and `maths.mul(7, 8)`.
pub fn maths_class() -> multiproc::Result<()> {
    let manager = BaseManager::<(MathsClass,)>::start()?;
    let maths = manager.create(MathsClass)?;
    println!("  {}", maths.add(4, 3)?);
    println!("  {}", maths.mul(7, 8)?);
    Ok(())
}

fn main() -> multiproc::Result<()> {
    maths_class()
}
