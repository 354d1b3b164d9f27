//! SharedMemory: shm_a and shm_b, ending in b'howdy'.
//!
//! Ported from Python:
//!
//! - `shm_a`, `shm_b` attached by name, ending in `b'howdy'`. `buf` is a slice of atomic bytes
//!   (`bytes()`), read and written with `read_at`/`write_at`.
//!
//! Run it with `cargo run --example shared_memory_blocks`; the `tour` example runs it too.

use multiproc::SharedMemory;

/// The `shm_a` / `shm_b` walk-through: one block, two attachments, ending in `b'howdy'`.
pub fn shm_a_and_shm_b() -> multiproc::Result<()> {
    let shm_a = SharedMemory::create(10)?;
    println!("   shm_a = {shm_a:?}, {} bytes", shm_a.bytes().len());
    shm_a.write_at(0, &[22, 33, 44, 55])?; // buffer[:4] = bytearray([22, 33, 44, 55])
    shm_a.write_at(4, &[100])?; // buffer[4] = 100
    let shm_b = SharedMemory::attach(shm_a.name())?; // attach to the existing block
    let mut first = [0u8; 5];
    shm_b.read_at(0, &mut first)?;
    println!("   array('b', shm_b.buf[:5]) = {first:?}");
    assert_eq!(first, [22, 33, 44, 55, 100]);
    shm_b.write_at(0, b"howdy")?; // shm_b.buf[:5] = b'howdy'
    let mut through_a = [0u8; 5];
    shm_a.read_at(0, &mut through_a)?;
    println!("   bytes(shm_a.buf[:5]) = b{:?}", String::from_utf8_lossy(&through_a));
    assert_eq!(&through_a, b"howdy");
    shm_b.close();
    shm_a.unlink()?; // once, to release the block
    shm_a.close();
    Ok(())
}

fn main() -> multiproc::Result<()> {
    shm_a_and_shm_b()
}
