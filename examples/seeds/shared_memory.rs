//! The shared-memory scenarios of seed 003: `Value` and `Array` changed by a child, the
//! `SharedMemory` walk-through of `shm_a` and `shm_b`, and `ShareableList`s shared by processes.
//! Shared by the standalone examples and the tour.
#![allow(dead_code)]

use multiproc::shm::Item;
use multiproc::{Array, Process, ShareableList, SharedMemory, Value};

/// The child's side of `Value('d', 10.0)`: `num.value = 10.78`.
fn set_value(num: Value<f64>) {
    num.set(10.78).expect("no holder of the lock died");
}

/// `num = Value('d', 10.0)`; a child sets it to 10.78; the parent prints the new value.
pub fn value_set_by_child() -> multiproc::Result<()> {
    let num = Value::new(10.0f64)?;
    let mut child = Process::new(set_value, (num.clone(),));
    child.start()?;
    child.join()?;
    println!("   num.value = {}", num.get()?);
    assert_eq!(num.get()?, 10.78);
    Ok(())
}

/// The child's side of `Array('i', [1, 2, 3, 4, 5])`: `num[2] = 9999`.
fn set_element(num: Array<i32>) {
    num.set(2, 9999).expect("index 2 exists");
}

/// `num = Array('i', [1, 2, 3, 4, 5])`; a child sets `num[2] = 9999`; the parent prints `num[:]`.
pub fn array_set_by_child() -> multiproc::Result<()> {
    let num = Array::from_slice(&[1i32, 2, 3, 4, 5])?;
    let mut child = Process::new(set_element, (num.clone(),));
    child.start()?;
    child.join()?;
    println!("   num[:] = {:?}", num.to_vec()?);
    assert_eq!(num.to_vec()?, [1, 2, 9999, 4, 5]);
    Ok(())
}

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

/// The `ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])` walk-through.
pub fn shareable_list_walkthrough() -> multiproc::Result<()> {
    let a = ShareableList::new([
        Item::from("howdy"),
        Item::from(b"HoWdY"),
        Item::from(-273.154),
        Item::from(100),
        Item::None,
        Item::from(true),
        Item::from(42),
    ])?;
    println!("   {a:?}");
    println!("   a[2] = {}", a.get(2)?);
    a.set(2, -78.5)?;
    println!("   a[2] = {}", a.get(2)?);
    a.set(2, "dry ice")?; // changing the type is supported as well
    println!("   a[2] = {}", a.get(2)?);
    match a.set(2, "larger than previously allocated storage space") {
        Err(e) => println!("   a[2] = 'larger than ...': {e}"),
        Ok(()) => unreachable!("the slot holds 8 bytes"),
    }
    assert_eq!(a.get(2)?, Item::from("dry ice"));
    println!("   len(a) = {}, a.index(42) = {}", a.len(), a.index(42)?);
    println!("   a.count(b'howdy') = {}, a.count(b'HoWdY') = {}", a.count(b"howdy")?, a.count(b"HoWdY")?);
    assert_eq!((a.index(42)?, a.count(b"howdy")?, a.count(b"HoWdY")?), (6, 0, 1));
    a.shm().unlink()?;
    Ok(())
}

/// The second process of the `ShareableList(range(5))` scenario: attaches by name, sets `c[-1]`.
fn attach_and_set_last(name: String) {
    let c = ShareableList::attach(&name).expect("the list exists");
    println!("   in the second process: {c:?}");
    c.set(-1, -999).expect("index -1 exists");
}

/// `b = ShareableList(range(5))`; a second process attaches by name and sets `c[-1] = -999`.
pub fn shareable_list_by_name() -> multiproc::Result<()> {
    let b = ShareableList::new(0..5)?;
    let mut second = Process::new(attach_and_set_last, (b.name().to_owned(),));
    second.start()?;
    second.join()?;
    println!("   b[-1] = {}", b.get(-1)?);
    assert_eq!(b.get(-1)?, Item::Int(-999));
    b.shm().unlink()?;
    Ok(())
}

/// One half of the work: squares the items `start..end` in place.
fn do_work(sl: ShareableList, start: usize, end: usize) {
    for i in start..end {
        if let Ok(Item::Int(x)) = sl.get(i as isize) {
            sl.set(i as isize, x * x).expect("index in range");
        }
    }
}

/// `ShareableList(range(2000))` filled by two processes, each doing one half, then summed.
pub fn shareable_list_two_halves() -> multiproc::Result<()> {
    let sl = ShareableList::new(0..2000)?;
    let mut p1 = Process::new(do_work, (sl.clone(), 0, 1000));
    let mut p2 = Process::new(do_work, (sl.clone(), 1000, 2000));
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    let total: i64 = sl.to_vec()?.iter().map(|item| if let Item::Int(x) = item { *x } else { 0 }).sum();
    println!("   sum of the squares of 0..2000 = {total}");
    assert_eq!(total, (0..2000i64).map(|x| x * x).sum::<i64>());
    sl.shm().unlink()?;
    Ok(())
}
