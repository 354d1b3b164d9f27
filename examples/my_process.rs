//! A Process subclass: MyProcess with run().
//!
//! Ported from Python:
//!
//! - `class MyProcess(Process)` with `__init__(person)` and `run()`. The subclass is a serde struct
//!   implementing `Run`.
//!
//! Run it with `cargo run --example my_process`; the `tour` example runs it too.

use multiproc::{Process, Run};
use serde::{Deserialize, Serialize};

/// The original's `MyProcess(Process)` subclass with a `run` method.
#[derive(Serialize, Deserialize)]
pub struct MyProcess {
    person: String,
}

impl Run for MyProcess {
    type Output = ();
    fn run(self) {
        println!("  pid {}: {} is chatting with the streamer", std::process::id(), self.person);
    }
}

pub fn my_process() -> multiproc::Result<()> {
    let mut children: Vec<Process> =
        ["Jedan", "太白", "alexDSB"].into_iter().map(|p| Process::from_run(MyProcess { person: p.into() })).collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    my_process()
}
