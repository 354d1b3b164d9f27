//! Remote manager scenario: see `seeds/managers.rs` (`remote_job_queue`). Run with `cargo run --example remote_manager`.

#[path = "seeds/managers.rs"]
mod managers;

fn main() -> multiproc::Result<()> {
    managers::remote_job_queue()
}
