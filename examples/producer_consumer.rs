//! Seeds 002 and 003: producers and consumers on queues (ten and ten on Queue(3), None sentinels,
//! a Queue(maxsize=5) filled then drained). See `seeds/queues.rs`.
//! Run with `cargo run --example producer_consumer`.

#[path = "seeds/queues.rs"]
mod queues;

fn main() -> multiproc::Result<()> {
    queues::ten_producers_ten_consumers()?;
    queues::sentinels_end_the_consumers()?;
    queues::producer_fills_consumer_drains()
}
