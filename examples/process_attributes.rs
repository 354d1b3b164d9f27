//! Seed 002: a Process's name, pid, is_alive, join with a timeout, terminate and exitcode; a daemon
//! may not have children. See `seeds/processes.rs`. Run with `cargo run --example
//! process_attributes`.

#[path = "seeds/processes.rs"]
mod processes;

fn main() -> multiproc::Result<()> {
    processes::process_attributes()?;
    processes::daemon_cannot_have_children()
}
