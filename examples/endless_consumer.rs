//! Seed 002: a consumer whose `while True: q.get()` never ends. See `seeds/queues.rs`. Run with
//! `cargo run --example endless_consumer`.

#[path = "seeds/queues.rs"]
mod queues;

fn main() -> multiproc::Result<()> {
    queues::consumer_never_ends()
}
