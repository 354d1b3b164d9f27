//! A `Process` subclass serving upper-casing requests over a duplex pipe until told to stop. See
//! `seeds/connections.rs`. Run with `cargo run --example upper_server`.

#[path = "seeds/connections.rs"]
mod connections;

fn main() -> multiproc::Result<()> {
    connections::upper_case_server()
}
