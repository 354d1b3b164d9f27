//! Seed 002 scenario: see `seeds/processes.rs` (`tcp_echo_server`). Run with `cargo run --example tcp_echo`.

#[path = "seeds/processes.rs"]
mod processes;

fn main() -> multiproc::Result<()> {
    processes::tcp_echo_server()
}
