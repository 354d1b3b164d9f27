//! Seed 004's threads: two ways to start one, shared memory, daemon threads, names and counts. See
//! `seeds/threads.rs`. Run with `cargo run --example threads`.

#[path = "seeds/threads.rs"]
mod threads;

fn main() -> multiproc::Result<()> {
    threads::two_ways_to_start_a_thread()?;
    threads::threads_share_memory()?;
    threads::daemon_threads()?;
    threads::current_thread_and_active_count()
}
