//! Synchronization conformance (conformance.md D1–D5: LOCK-, SEM-, COND-, EVT-, BAR- items), plus
//! what the port adds: mutual exclusion checked from the order of reports, owners killed with
//! `SIGKILL` (robust locks), a barrier party killed while it waits, primitives shared by threads,
//! and no shared memory left behind.
//!
//! Cases with child processes are written once (`common/sync_suite.rs`, `sync_suite!`) and run
//! here under the forkserver and spawn start methods, and under fork by `tests/sync_fork.rs` (fork
//! refuses a multi-threaded parent, and libtest runs tests on threads).
//!
//! Children report on a datagram socket (`common::channel`). Where a test needs a child to be
//! asleep inside a primitive before it acts (notify, kill), it polls the child's state in
//! `/proc/<pid>/stat` under the watchdog; no sleep orders events. The few negative checks ("no
//! further waiter woke") give a wrong implementation a bounded window to show itself, which cannot
//! make a correct one fail.

mod common;

use common::sync_suite::*;

macro_rules! case {
    ($method:expr, $name:ident) => {
        #[test]
        fn $name() {
            let ctx = multiproc::Context::new($method);
            crate::common::watchdog(stringify!($name), 30, || crate::common::sync_suite::$name(ctx));
        }
    };
}

mod forkserver {
    macro_rules! forkserver_case {
        ($name:ident) => {
            case!(multiproc::StartMethod::ForkServer, $name);
        };
    }
    crate::sync_suite!(forkserver_case);
}

mod spawn {
    macro_rules! spawn_case {
        ($name:ident) => {
            case!(multiproc::StartMethod::Spawn, $name);
        };
    }
    crate::sync_suite!(spawn_case);
}

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc::sync::AcquireError;
use multiproc::{Barrier, BoundedSemaphore, Condition, Error, Event, Lock, RLock, Semaphore};

// ---------------------------------------------------------------------------------------------
// Cases without children: one process, its threads
// ---------------------------------------------------------------------------------------------

// LOCK-01, LOCK-05 (the guard is the `with` form; releasing an unheld lock cannot be written: only
// a guard releases).
#[test]
fn lock_acquire_and_release() {
    common::watchdog("lock_acquire_and_release", 10, || {
        let lock = Lock::new().unwrap();
        assert!(!lock.locked());
        let guard = lock.acquire().expect("fresh");
        assert!(lock.locked());
        assert!(matches!(lock.try_acquire(), Err(AcquireError::WouldDeadlock)));
        assert!(matches!(lock.acquire(), Err(AcquireError::WouldDeadlock)));
        let other = {
            let lock = lock.clone();
            std::thread::spawn(move || matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)))
        };
        assert!(other.join().unwrap());
        assert!(format!("{lock:?}").contains("locked: true"), "{lock:?}");
        drop(guard);
        assert!(!lock.locked());
        assert!(format!("{lock:?}").contains("locked: false"), "{lock:?}");
        drop(lock.try_acquire().expect("free again"));
        assert!(AcquireError::<()>::WouldDeadlock.to_string().contains("RLock"));
    });
}

// LOCK-03: an RLock is taken three times by its owner, locked until the third release.
#[test]
fn rlock_counts_its_acquisitions() {
    common::watchdog("rlock_counts_its_acquisitions", 10, || {
        let lock = RLock::new().unwrap();
        let guards: Vec<_> = (0..3).map(|_| lock.acquire().expect("recursive")).collect();
        assert!(lock.locked() && lock.is_owned());
        let other = {
            let lock = lock.clone();
            std::thread::spawn(move || (matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)), lock.is_owned()))
        };
        assert_eq!(other.join().unwrap(), (true, false));
        let mut guards = guards.into_iter();
        drop(guards.next());
        assert!(lock.locked());
        drop(guards.next());
        assert!(lock.locked());
        drop(guards.next());
        assert!(!lock.locked() && !lock.is_owned());
    });
}

// LOCK-06, LOCK-07: the Debug form names the holder (CPython's repr names the owning process and
// thread): no owner while free, the holding thread's id as seen from any thread, and for an RLock
// the number of acquisitions.
#[test]
fn lock_debug_names_its_owner() {
    common::watchdog("lock_debug_names_its_owner", 10, || {
        let lock = Lock::new().unwrap();
        assert!(format!("{lock:?}").contains("owner: None"), "{lock:?}");
        let guard = lock.acquire().expect("fresh");
        let mine = format!("owner: Some({})", gettid());
        assert!(format!("{lock:?}").contains(&mine), "{lock:?}");
        let seen_by_another_thread = {
            let lock = lock.clone();
            std::thread::spawn(move || format!("{lock:?}")).join().unwrap()
        };
        assert!(seen_by_another_thread.contains(&mine), "{seen_by_another_thread}");
        drop(guard);
        assert!(format!("{lock:?}").contains("owner: None"), "{lock:?}");

        let rlock = RLock::new().unwrap();
        assert!(format!("{rlock:?}").contains("owner: None, count: 0"), "{rlock:?}");
        let guards: Vec<_> = (0..3).map(|_| rlock.acquire().expect("recursive")).collect();
        assert!(format!("{rlock:?}").contains(&format!("{mine}, count: 3")), "{rlock:?}");
        let in_thread = {
            let rlock = rlock.clone();
            std::thread::spawn(move || format!("{rlock:?}")).join().unwrap()
        };
        assert!(in_thread.contains(&format!("{mine}, count: 3")), "{in_thread}");
        drop(guards);
        assert!(format!("{rlock:?}").contains("owner: None, count: 0"), "{rlock:?}");
    });
}

// SEM-01, SEM-02
#[test]
fn semaphore_and_bounded_semaphore_count() {
    common::watchdog("semaphore_and_bounded_semaphore_count", 10, || {
        let sem = Semaphore::new(2).unwrap();
        assert_eq!(sem.value(), 2);
        let a = sem.acquire();
        assert_eq!(sem.value(), 1);
        let b = sem.try_acquire().expect("one left");
        assert_eq!(sem.value(), 0);
        assert!(sem.try_acquire().is_none());
        assert!(!sem.acquire_unguarded(Some(Duration::ZERO)));
        drop((a, b));
        assert_eq!(sem.value(), 2);
        sem.release();
        assert_eq!(sem.value(), 3);
        sem.release();
        assert_eq!(sem.value(), 4, "unbounded");

        let bounded = BoundedSemaphore::new(2).unwrap();
        let a = bounded.acquire();
        let b = bounded.acquire();
        assert_eq!(bounded.value(), 0);
        assert!(bounded.try_acquire().is_none());
        drop(a);
        assert_eq!(bounded.value(), 1);
        drop(b);
        assert_eq!(bounded.value(), 2);
        assert!(matches!(bounded.release(), Err(Error::InvalidState(_))));
        assert_eq!(bounded.value(), 2);
        assert!(bounded.acquire_unguarded(None));
        bounded.release().unwrap();
        assert!(bounded.release().is_err());

        // A bound of zero refuses every release (CPython: BoundedSemaphore(0).release() raises).
        let empty = BoundedSemaphore::new(0).unwrap();
        assert!(empty.try_acquire().is_none());
        assert!(matches!(empty.release(), Err(Error::InvalidState(_))));
        assert_eq!(empty.value(), 0);
        assert!(format!("{bounded:?}").contains("value: 2"), "{bounded:?}");
    });
}

// SEM-03: on an empty semaphore, non-blocking attempts fail at once and timed ones after the time.
#[test]
fn empty_semaphore_times_out() {
    common::watchdog("empty_semaphore_times_out", 10, || {
        let sem = Semaphore::new(0).unwrap();
        let start = Instant::now();
        assert!(sem.try_acquire().is_none());
        assert!(sem.acquire_timeout(Duration::ZERO).is_none());
        assert!(!sem.acquire_unguarded(Some(Duration::ZERO)));
        assert!(start.elapsed() < Duration::from_secs(1));
        let start = Instant::now();
        assert!(sem.acquire_timeout(SHORT).is_none());
        assert_between(start.elapsed(), SHORT, PATIENCE);
        let start = Instant::now();
        assert!(!sem.acquire_unguarded(Some(SHORT)));
        assert_between(start.elapsed(), SHORT, PATIENCE);
    });
}

// EVT-01 in one process: set, clear, wait outcomes.
#[test]
fn event_set_clear_and_wait() {
    common::watchdog("event_set_clear_and_wait", 10, || {
        let event = Event::new().unwrap();
        assert!(!event.is_set());
        assert!(format!("{event:?}").contains("set: false"));
        event.set();
        assert!(event.is_set());
        assert!(format!("{event:?}").contains("set: true"));
        let start = Instant::now();
        event.wait();
        assert!(event.wait_timeout(PATIENCE));
        assert!(start.elapsed() < Duration::from_secs(1));
        event.set(); // setting twice is harmless
        event.clear();
        assert!(!event.is_set());
        let start = Instant::now();
        assert!(!event.wait_timeout(SHORT));
        assert_between(start.elapsed(), SHORT, PATIENCE);
    });
}

// COND-04 over an RLock held twice: a wait releases every level and restores them.
#[test]
fn condition_wait_over_a_twice_held_rlock_restores_the_depth() {
    common::watchdog("condition_wait_over_a_twice_held_rlock_restores_the_depth", 10, || {
        let rlock = RLock::new().unwrap();
        let cond = Condition::with_rlock(rlock.clone()).unwrap();
        let outer = cond.acquire().unwrap();
        let mut inner = cond.acquire().unwrap();
        // While the owner waits, another thread takes the lock and notifies.
        let (cond2, rlock2) = (cond.clone(), rlock.clone());
        let notifier = std::thread::spawn(move || {
            let guard = cond2.acquire().unwrap();
            assert!(rlock2.is_owned());
            cond2.notify(&guard, 1);
        });
        assert!(cond.wait(&mut inner, Some(PATIENCE)));
        notifier.join().unwrap();
        assert!(rlock.is_owned());
        drop(inner);
        assert!(rlock.locked(), "one level still held");
        let other = {
            let rlock = rlock.clone();
            std::thread::spawn(move || matches!(rlock.try_acquire(), Err(AcquireError::WouldBlock)))
        };
        assert!(other.join().unwrap());
        drop(outer);
        assert!(!rlock.locked());
        let start = Instant::now();
        let mut guard = cond.acquire().unwrap();
        assert!(!cond.wait_for(&mut guard, || false, Some(SHORT)));
        assert_between(start.elapsed(), SHORT, PATIENCE);
    });
}

// BAR-09
#[test]
fn barrier_of_one_passes_at_once() {
    common::watchdog("barrier_of_one_passes_at_once", 10, || {
        let barrier = Barrier::new(1).unwrap();
        for _ in 0..5 {
            assert_eq!(barrier.wait().unwrap(), 0);
        }
        assert!(matches!(Barrier::new(0), Err(Error::InvalidState(_))));
        assert!(format!("{barrier:?}").contains("parties: 1"));
    });
}

// The same primitives, cloned into threads of one process.
#[test]
fn primitives_cloned_into_threads_work_the_same() {
    common::watchdog("primitives_cloned_into_threads_work_the_same", 20, || {
        const THREADS: u32 = 4;
        // Lock: mutual exclusion.
        let lock = Lock::new().unwrap();
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (lock, inside) = (lock.clone(), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let _guard = lock.acquire().unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two threads inside");
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(!lock.locked());

        // Semaphore(2): at most 2 inside, and exactly 2 while two holders wait.
        let sem = Semaphore::new(2).unwrap();
        let (inside, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let threads: Vec<_> = (0..THREADS + 1)
            .map(|_| {
                let (sem, inside, most) = (sem.clone(), Arc::clone(&inside), Arc::clone(&most));
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let _unit = sem.acquire();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        assert!(now <= 2, "{now} threads inside");
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(most.load(Ordering::SeqCst) <= 2);
        let (go, holding) = (Event::new().unwrap(), Barrier::new(3).unwrap());
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let (sem, go, holding) = (sem.clone(), go.clone(), holding.clone());
                std::thread::spawn(move || {
                    let _unit = sem.acquire();
                    holding.wait().unwrap();
                    go.wait();
                })
            })
            .collect();
        holding.wait().unwrap();
        assert_eq!(sem.value(), 0);
        assert!(sem.try_acquire().is_none());
        go.set();
        holders.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(sem.value(), 2);

        // Event: a waiting thread is woken by a set.
        let event = Event::new().unwrap();
        let waiter = {
            let event = event.clone();
            std::thread::spawn(move || event.wait_timeout(PATIENCE))
        };
        event.set();
        assert!(waiter.join().unwrap());

        // Barrier: 4 threads, 10 rounds, distinct indices every round.
        let barrier = Barrier::new(THREADS).unwrap();
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || (0..10).map(|_| barrier.wait().unwrap()).collect::<Vec<u32>>())
            })
            .collect();
        let per_thread: Vec<Vec<u32>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for round in 0..10 {
            let indices: BTreeSet<u32> = per_thread.iter().map(|v| v[round]).collect();
            assert_eq!(indices, (0..THREADS).collect::<BTreeSet<u32>>());
        }
        assert!(!barrier.broken() && barrier.n_waiting() == 0);

        // Condition: wait_for over a flag set by another thread.
        let cond = Condition::new().unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let mut guard = cond.acquire().unwrap();
        let setter = {
            let (cond, flag) = (cond.clone(), Arc::clone(&flag));
            std::thread::spawn(move || {
                let guard = cond.acquire().unwrap();
                flag.store(true, Ordering::SeqCst);
                cond.notify_all(&guard);
            })
        };
        assert!(cond.wait_for(&mut guard, || flag.load(Ordering::SeqCst), Some(PATIENCE)));
        drop(guard);
        setter.join().unwrap();
    });
}

// A thread asleep in `acquire` is woken by the release, and a thread asleep in a barrier's wait is
// broken by abort (the parent checks that each is asleep before acting).
#[test]
fn sleeping_threads_are_woken() {
    common::watchdog("sleeping_threads_are_woken", 10, || {
        let lock = Lock::new().unwrap();
        let guard = lock.acquire().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                tx.send(gettid()).unwrap();
                lock.acquire().is_ok()
            })
        };
        wait_until_thread_asleep(rx.recv().unwrap());
        drop(guard);
        assert!(waiter.join().unwrap());

        let barrier = Barrier::new(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                tx.send(gettid()).unwrap();
                barrier.wait()
            })
        };
        let tid = rx.recv().unwrap();
        while barrier.n_waiting() < 1 {
            std::thread::yield_now();
        }
        wait_until_thread_asleep(tid);
        barrier.abort();
        assert!(matches!(waiter.join().unwrap(), Err(Error::BrokenBarrier)));
    });
}

// No /dev/shm entries appear, and each primitive is an anonymous memory file of this crate.
#[test]
fn primitives_live_in_anonymous_memory_files() {
    common::watchdog("primitives_live_in_anonymous_memory_files", 10, || {
        let before = dev_shm();
        let all: Everything = (
            Lock::new().unwrap(),
            RLock::new().unwrap(),
            Semaphore::new(3).unwrap(),
            BoundedSemaphore::new(3).unwrap(),
            Event::new().unwrap(),
            Condition::new().unwrap(),
            Barrier::new(3).unwrap(),
        );
        let links: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .filter(|l| l.starts_with("/memfd:multiproc"))
            .collect();
        assert!(links.len() >= 8, "{links:?}");
        assert!(links.iter().all(|l| l.ends_with("(deleted)")), "{links:?}");
        let after = dev_shm();
        assert_eq!(after.difference(&before).count(), 0, "new /dev/shm entries: {:?}", after.difference(&before));
        drop(all);
    });
}
