//! Seed 002 scenario: see `seeds/processes.rs` (`ten_processes`). Run with `cargo run --example start_ten`.

#[path = "seeds/processes.rs"]
mod processes;

fn main() -> multiproc::Result<()> {
    processes::ten_processes()
}
