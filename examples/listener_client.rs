//! `Listener` and `Client` with an authkey between two processes, and a client with the wrong key.
//! See `seeds/connections.rs`. Run with `cargo run --example listener_client`.

#[path = "seeds/connections.rs"]
mod connections;

fn main() -> multiproc::Result<()> {
    connections::listener_and_client()
}
