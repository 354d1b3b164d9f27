//! Seed 003: a `Value` and an `Array` changed by a child. See `seeds/shared_memory.rs`.
//! Run with `cargo run --example shared_values`.

#[path = "seeds/shared_memory.rs"]
mod shared_memory;

fn main() -> multiproc::Result<()> {
    shared_memory::value_set_by_child()?;
    shared_memory::array_set_by_child()
}
