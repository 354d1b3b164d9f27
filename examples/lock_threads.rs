//! A hundred threads decrement a counter under one Lock.
//!
//! Ported from Python:
//!
//! - A hundred threads decrement `n` under a `Lock`. Uses this crate's `Lock` (the one processes
//!   share); also shows updates lost without it.
//!
//! Run it with `cargo run --example lock_threads`; the `tour` example runs it too.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use multiproc::Lock;
use multiproc::sync::{AcquireError, LockGuard};

/// Takes `lock`, the Rust form of `with lock:`. A holder that died inside its critical section
/// left nothing half-done in these examples, so the lock is simply taken over.
fn hold(lock: &Lock) -> LockGuard<'_> {
    match lock.acquire() {
        Ok(guard) => guard,
        Err(AcquireError::OwnerDied(died)) => {
            println!("  (a previous holder died holding the lock; taking it over)");
            died.recover()
        }
        Err(e) => panic!("acquire the lock: {e}"),
    }
}

/// A deliberately non-atomic decrement: read, pause, write back.
fn decrement(n: &AtomicI64) {
    let value = n.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_micros(100)); // 0.1 s in the original
    n.store(value - 1, Ordering::Relaxed);
}

/// A hundred threads of this process each decrement a shared counter under the same
/// [`Lock`] type that processes share (clones of one lock): 100 becomes exactly 0. Without the
/// lock, updates get lost.
pub fn hundred_threads() -> multiproc::Result<()> {
    let run = |mutex: Option<Lock>| {
        let n = Arc::new(AtomicI64::new(100));
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let (n, mutex) = (Arc::clone(&n), mutex.clone());
                std::thread::spawn(move || match &mutex {
                    Some(mutex) => {
                        let _guard = hold(mutex);
                        decrement(&n);
                    }
                    None => decrement(&n),
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a thread panicked");
        }
        n.load(Ordering::Relaxed)
    };
    let with_lock = run(Some(Lock::new()?));
    println!("  with the lock: 100 - 100 decrements = {with_lock}");
    assert_eq!(with_lock, 0);
    let without = run(None);
    println!("  without it: {without} ({without} decrements lost to overlapping read-and-write)");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    hundred_threads()
}
