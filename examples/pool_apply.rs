//! Seeds 000 and 002: `apply` one call at a time, `apply_async` then `get` each, and `apply_async`,
//! `close`, `join`, then `get`. See `seeds/pools.rs` (`apply_in_turn`, `apply_async_then_get`,
//! `close_join_then_get`). Run with `cargo run --example pool_apply`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::apply_in_turn()?;
    pools::apply_async_then_get()?;
    pools::close_join_then_get()
}
