//! Seed 001 (its related articles): the parent's pid and a child's, two targets, three children.
//! See `seeds/processes.rs`. Run with `cargo run --example parent_child_pids`.

#[path = "seeds/processes.rs"]
mod processes;

fn main() -> multiproc::Result<()> {
    processes::parent_and_child_pids()
}
