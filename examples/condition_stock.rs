//! A producer process and consumer processes around a Condition. See `seeds/sync.rs`.
//! Run with `cargo run --example condition_stock`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::condition_stock()
}
