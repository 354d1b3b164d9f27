//! ShareableList of mixed items, and a str too long for its slot.
//!
//! Ported from Python:
//!
//! - ShareableList: mixed items, `a[2]` changed, a too long `str`, `len`, `index`, `count`.
//!   CPython's layout; the too long `str` is an error, not a `ValueError`.
//! - `ShareableList(range(5))` attached by name in a second process, `c[-1] = -999`. The second
//!   process is a real child here (the original uses one interpreter).
//! - `with SharedMemoryManager() as smm`, `ShareableList(range(2000))`, `do_work` by two processes,
//!   `sum(sl)`. The original never defines `do_work`: here each worker sums its half into its first
//!   slot (with the manager) or squares its half (without).
//!
//! Run it with `cargo run --example shareable_list`; the `tour` example runs it too.

use multiproc::shm::Item;
use multiproc::{Process, ShareableList};

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

fn main() -> multiproc::Result<()> {
    shareable_list_walkthrough()?;
    shareable_list_by_name()?;
    shareable_list_two_halves()
}
