//! Seed 003: a one-way pipe (`Pipe(duplex=False)`). See `seeds/connections.rs`.
//! Run with `cargo run --example simplex_pipe`.

#[path = "seeds/connections.rs"]
mod connections;

fn main() -> multiproc::Result<()> {
    connections::simplex_pipe()
}
