//! Seed 003 scenario: see `seeds/managers.rs` (`mixed_dict_and_list`). Run with `cargo run --example manager_mixed`.

#[path = "seeds/managers.rs"]
mod managers;

fn main() -> multiproc::Result<()> {
    managers::mixed_dict_and_list()
}
