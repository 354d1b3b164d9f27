//! Seed 004: Queue(5) step by step; a producer child and a consumer child. See `seeds/queues.rs`.
//! Run with `cargo run --example queue_of_five`.

#[path = "seeds/queues.rs"]
mod queues;

fn main() -> multiproc::Result<()> {
    queues::queue_of_five_walkthrough()?;
    queues::child_to_child()
}
