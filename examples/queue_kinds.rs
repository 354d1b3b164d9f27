//! Seed 003: Queue, SimpleQueue, LifoQueue and PriorityQueue side by side. See `seeds/queues.rs`.
//! Run with `cargo run --example queue_kinds`.

#[path = "seeds/queues.rs"]
mod queues;

fn main() -> multiproc::Result<()> {
    queues::queue_kinds()
}
