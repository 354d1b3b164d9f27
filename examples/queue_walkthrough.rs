//! Seeds 002 and 004: Queue(3) step by step; a child puts and the parent gets. See
//! `seeds/queues.rs`. Run with `cargo run --example queue_walkthrough`.

#[path = "seeds/queues.rs"]
mod queues;

fn main() -> multiproc::Result<()> {
    queues::queue_walkthrough()?;
    queues::child_puts_parent_gets()
}
