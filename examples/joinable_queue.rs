//! Seeds 002 and 004: a JoinableQueue with daemon consumers and producers waiting on join; then
//! seed 004's variant, where the main process waits in `q.join()`. See `seeds/queues.rs`. Run with
//! `cargo run --example joinable_queue`.

#[path = "seeds/queues.rs"]
mod queues;

fn main() -> multiproc::Result<()> {
    queues::joinable_queue_with_daemon_consumers()?;
    queues::joinable_queue_main_joins()
}
