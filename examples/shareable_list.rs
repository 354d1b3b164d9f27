//! Seed 003: `ShareableList`s: the mixed-item walk-through, a list attached by name in a second
//! process, and `range(2000)` worked on by two processes. See `seeds/shared_memory.rs`.
//! Run with `cargo run --example shareable_list`.

#[path = "seeds/shared_memory.rs"]
mod shared_memory;

fn main() -> multiproc::Result<()> {
    shared_memory::shareable_list_walkthrough()?;
    shared_memory::shareable_list_by_name()?;
    shared_memory::shareable_list_two_halves()
}
