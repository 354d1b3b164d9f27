//! Seeds 000 and 003: parent and child over a duplex `Pipe`. See `seeds/connections.rs`.
//! Run with `cargo run --example pipe_hello`.

#[path = "seeds/connections.rs"]
mod connections;

fn main() -> multiproc::Result<()> {
    connections::pipe_to_child()?;
    connections::pipe_from_child()
}
