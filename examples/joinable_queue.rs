//! Seeds 002 and 004: a JoinableQueue with daemon consumers and producers waiting on join. See
//! `seeds/queues.rs`. Run with `cargo run --example joinable_queue`.

#[path = "seeds/queues.rs"]
mod queues;

fn main() -> multiproc::Result<()> {
    queues::joinable_queue_with_daemon_consumers()
}
