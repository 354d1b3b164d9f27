//! Seed 002 scenario: see `seeds/processes.rs` (`daemon_dies_with_parent`). Run with `cargo run --example daemon`.

#[path = "seeds/processes.rs"]
mod processes;

fn main() -> multiproc::Result<()> {
    processes::daemon_dies_with_parent()
}
