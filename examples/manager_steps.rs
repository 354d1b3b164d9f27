//! Seed 003: the steps of using a Manager (list, dict, Queue, Lock, Event, Value, Array) and a
//! SharedMemoryManager. See `seeds/managers.rs`. Run with `cargo run --example manager_steps`.

#[path = "seeds/managers.rs"]
mod managers;

fn main() -> multiproc::Result<()> {
    managers::manager_steps()
}
