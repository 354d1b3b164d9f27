//! Seed 002: apply on Pool(3) with an initializer; apply_async, close, join, get, then apply;
//! results collected without a callback. See `seeds/pools.rs`. Run with `cargo run --example
//! pool_apply_results`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::apply_on_three_workers()?;
    pools::msg_hello_async_then_sync()?;
    pools::collect_without_callback()
}
