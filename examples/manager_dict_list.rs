//! Seed 001 scenario: see `seeds/managers.rs` (`worker_fills_dict_and_list`). Run with `cargo run --example manager_dict_list`.

#[path = "seeds/managers.rs"]
mod managers;

fn main() -> multiproc::Result<()> {
    managers::worker_fills_dict_and_list()
}
