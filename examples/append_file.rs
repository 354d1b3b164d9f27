//! Seed 002 scenario: see `seeds/processes.rs` (`append_to_one_file`). Run with `cargo run --example append_file`.

#[path = "seeds/processes.rs"]
mod processes;

fn main() -> multiproc::Result<()> {
    processes::append_to_one_file()
}
