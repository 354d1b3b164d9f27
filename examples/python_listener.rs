//! A Rust client talking to a CPython `multiprocessing.connection.Listener` with an authkey,
//! exchanging pickled values. Needs `python3` (skipped without it). See `seeds/connections.rs`.
//! Run with `cargo run --example python_listener`.

#[path = "seeds/connections.rs"]
mod connections;

fn main() -> multiproc::Result<()> {
    connections::rust_client_python_listener()
}
