//! Seed 002 scenario: see `seeds/processes.rs` (`my_process`). Run with `cargo run --example my_process`.

#[path = "seeds/processes.rs"]
mod processes;

fn main() -> multiproc::Result<()> {
    processes::my_process()
}
