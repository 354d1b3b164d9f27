//! Model checks of the state machines with loom: every interleaving of a few threads (and, with
//! loom's default memory model, weak orderings) is explored. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --lib sync::loom_models`
//! (`.ci/run` does; the bound on preemptions keeps the search to seconds, as loom recommends).
//!
//! The futex here is faithful: a waiter sleeps (on a loom condition variable) until a wake-up,
//! unless the word already changed; so a lost wake-up in a state machine shows as a deadlock,
//! which loom reports. The robust lock's takeover models use another one, whose every timed wait
//! may end in a timeout (`TimingOut`), and a table of the model's live threads.

use std::sync::atomic::Ordering;
use std::time::Duration;

use loom::sync::atomic::AtomicUsize;
use loom::sync::{Arc, Condvar, Mutex};

use super::atomic::AtomicU32;
use super::doorbell::{Bell, Sleepers};
use super::event::EventState;
use super::futex::{Futex, ThreadLife, Threads, Waited};
use super::lock_state::{Acquired, LockState};
use super::semaphore::SemaphoreState;

loom::lazy_static! {
    static ref PARK: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());
    /// The model's threads by id (0 to 3): their start time, 0 once gone.
    static ref LIVES: [loom::sync::atomic::AtomicU64; 4] = [(); 4].map(|()| loom::sync::atomic::AtomicU64::new(0));
}

/// The model's threads, as the lock's dead-owner check sees them.
fn model_life(tid: u32) -> ThreadLife {
    match LIVES[tid as usize].load(Ordering::SeqCst) {
        0 => ThreadLife::Gone,
        start => ThreadLife::Alive(start),
    }
}

/// Thread `tid` of the model starts (or a later thread reuses its id) with start time `start`.
fn born(tid: u32, start: u64) -> (u32, u64) {
    LIVES[tid as usize].store(start, Ordering::SeqCst);
    (tid, start)
}

/// Thread `tid` of the model dies (whatever it holds, it never releases).
fn dies(tid: u32) {
    LIVES[tid as usize].store(0, Ordering::SeqCst);
}

impl Threads for LoomFutex {
    fn life(tid: u32) -> ThreadLife {
        model_life(tid)
    }
}

/// A futex whose timed waits may always end in a timeout (after letting the others run): the
/// robust lock's owner check then runs at every point of every interleaving.
pub(crate) enum TimingOut {}

impl Futex for TimingOut {
    fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Waited {
        match timeout {
            None => LoomFutex::wait(word, expected, None),
            Some(_) => {
                loom::thread::yield_now();
                if word.load(Ordering::SeqCst) == expected { Waited::TimedOut } else { Waited::Retry }
            }
        }
    }

    fn wake(word: &AtomicU32, count: u32) {
        LoomFutex::wake(word, count);
    }
}

impl Threads for TimingOut {
    fn life(tid: u32) -> ThreadLife {
        model_life(tid)
    }
}

/// A futex on loom primitives. Timeouts are ignored (waits end only when woken), which is what
/// the models want: a state machine must never rely on a timeout to make progress, except for the
/// dead-owner check, which these models do not exercise.
pub(crate) enum LoomFutex {}

impl Futex for LoomFutex {
    fn wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> Waited {
        let (lock, wakes) = &*PARK;
        let mut generation = lock.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return Waited::Retry;
        }
        let seen = *generation;
        while *generation == seen {
            generation = wakes.wait(generation).unwrap();
        }
        Waited::Retry
    }

    fn wake(_word: &AtomicU32, _count: u32) {
        let (lock, wakes) = &*PARK;
        *lock.lock().unwrap() += 1;
        wakes.notify_all();
    }
}

/// Two threads take the lock in turn; `release(lock, tid)` gives it back.
fn excludes_and_hands_over(release: fn(&LockState, u32)) {
    loom::model(move || {
        let lock = Arc::new(LockState::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let (other, other_inside) = (lock.clone(), inside.clone());
        let t = loom::thread::spawn(move || {
            assert_eq!(other.acquire::<LoomFutex>((1, 1), None, false), Acquired::Clean);
            assert_eq!(other_inside.fetch_add(1, Ordering::SeqCst), 0);
            other_inside.fetch_sub(1, Ordering::SeqCst);
            release(&other, 1);
        });
        assert_eq!(lock.acquire::<LoomFutex>((2, 1), None, false), Acquired::Clean);
        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
        inside.fetch_sub(1, Ordering::SeqCst);
        release(&lock, 2);
        t.join().unwrap();
        assert!(!lock.locked());
    });
}

#[test]
fn lock_excludes_and_hands_over() {
    excludes_and_hands_over(|lock, _| lock.release::<LoomFutex>());
}

/// The queue's and `Lock`'s release (`release_once`: one read-modify-write, no look at the owner
/// or depth first) excludes, hands over and wakes a sleeper as `release` does.
#[test]
fn lock_released_once_excludes_and_hands_over() {
    excludes_and_hands_over(|lock, me| lock.release_once::<LoomFutex>(me));
}

#[test]
fn recursive_lock_counts_its_depth() {
    loom::model(|| {
        let lock = Arc::new(LockState::default());
        let other = lock.clone();
        let t = loom::thread::spawn(move || {
            assert_eq!(other.acquire::<LoomFutex>((1, 1), None, true), Acquired::Clean);
            assert_eq!(other.acquire::<LoomFutex>((1, 1), None, true), Acquired::Clean);
            other.release::<LoomFutex>();
            other.release::<LoomFutex>();
        });
        assert_eq!(lock.acquire::<LoomFutex>((2, 1), None, true), Acquired::Clean);
        lock.release::<LoomFutex>();
        t.join().unwrap();
        assert!(!lock.locked());
    });
}

/// Takes `lock` as `me`, counting itself inside `inside` (asserting it is alone); returns whether
/// the acquisition reported a dead owner, and recovers it.
fn take_and_count(lock: &LockState, me: (u32, u64), inside: &AtomicUsize) -> bool {
    let acquired = lock.acquire::<TimingOut>(me, None, false);
    assert!(matches!(acquired, Acquired::Clean | Acquired::OwnerDied(_)), "{acquired:?}");
    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two live owners at once");
    if matches!(acquired, Acquired::OwnerDied(_)) {
        lock.recover();
    }
    matches!(acquired, Acquired::OwnerDied(_))
}

/// Issue 18's ABA: a waiter whose owner checks run at any moment (every wait may time out) while
/// a live owner releases and takes the lock again never takes the lock over, and nobody is told
/// of a death that did not happen.
#[test]
fn lock_takeover_never_takes_from_a_live_owner() {
    loom::model(|| {
        let lock = Arc::new(LockState::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let (other, other_inside) = (lock.clone(), inside.clone());
        let x = born(1, 10);
        let t = loom::thread::spawn(move || {
            let y = born(2, 20);
            assert!(!take_and_count(&other, y, &other_inside), "OwnerDied with no death");
            other_inside.fetch_sub(1, Ordering::SeqCst);
            other.release::<TimingOut>();
        });
        for _ in 0..2 {
            assert!(!take_and_count(&lock, x, &inside), "OwnerDied with no death");
            inside.fetch_sub(1, Ordering::SeqCst);
            lock.release::<TimingOut>();
        }
        t.join().unwrap();
        assert!(!lock.locked());
    });
}

/// An owner dies holding the lock; its thread id is then reused by a new thread. The survivor and
/// the newcomer each get the lock, never together, and the death is reported exactly once.
#[test]
fn lock_taken_over_from_a_dead_owner_once() {
    loom::model(|| {
        let lock = Arc::new(LockState::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let reports = Arc::new(AtomicUsize::new(0));
        let (other, other_inside, other_reports) = (lock.clone(), inside.clone(), reports.clone());
        let t = loom::thread::spawn(move || {
            let doomed = born(1, 10);
            let died = take_and_count(&other, doomed, &other_inside);
            other_reports.fetch_add(usize::from(died), Ordering::SeqCst);
            other_inside.fetch_sub(1, Ordering::SeqCst);
            dies(1); // holding the lock
            let newcomer = born(1, 11);
            let died = take_and_count(&other, newcomer, &other_inside);
            other_reports.fetch_add(usize::from(died), Ordering::SeqCst);
            other_inside.fetch_sub(1, Ordering::SeqCst);
            other.release::<TimingOut>();
        });
        let survivor = born(2, 20);
        let died = take_and_count(&lock, survivor, &inside);
        reports.fetch_add(usize::from(died), Ordering::SeqCst);
        inside.fetch_sub(1, Ordering::SeqCst);
        lock.release::<TimingOut>();
        t.join().unwrap();
        assert_eq!(reports.load(Ordering::SeqCst), 1, "one death, one report");
        assert!(!lock.locked());
    });
}

#[test]
fn semaphore_units_are_never_lost_or_doubled() {
    loom::model(|| {
        let sem = Arc::new(SemaphoreState::with_units(1, u32::MAX));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (sem, inside) = (sem.clone(), inside.clone());
                loom::thread::spawn(move || {
                    assert!(sem.acquire::<LoomFutex>(None));
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    assert!(sem.release::<LoomFutex>());
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sem.value(), 1);
    });
}

#[test]
fn semaphore_release_from_another_thread_wakes_a_sleeper() {
    loom::model(|| {
        let sem = Arc::new(SemaphoreState::with_units(0, 1));
        let giver = sem.clone();
        let t = loom::thread::spawn(move || assert!(giver.release::<LoomFutex>()));
        assert!(sem.acquire::<LoomFutex>(None));
        t.join().unwrap();
        assert_eq!(sem.value(), 0);
    });
}

#[test]
fn event_set_wakes_every_waiter() {
    loom::model(|| {
        let event = Arc::new(EventState::default());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let event = event.clone();
                loom::thread::spawn(move || assert!(event.wait::<LoomFutex>(None)))
            })
            .collect();
        event.set::<LoomFutex>();
        for t in waiters {
            t.join().unwrap();
        }
    });
}

/// A level-triggered bell on loom primitives (an `eventfd` in the crate): sleepers block until it
/// rings; a lost wake-up shows as a deadlock.
#[derive(Default)]
struct LoomBell {
    rung: Mutex<bool>,
    changed: Condvar,
}

impl Bell for LoomBell {
    fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.changed.notify_all();
    }

    fn silence(&self) {
        *self.rung.lock().unwrap() = false;
    }
}

impl LoomBell {
    fn sleep_until_rung(&self) {
        let mut rung = self.rung.lock().unwrap();
        while !*rung {
            rung = self.changed.wait(rung).unwrap();
        }
    }
}

/// Two receivers share a ring into which a sender publishes two messages: each receiver gets one,
/// whatever the interleaving, including one receiver silencing the bell rung for the other.
#[test]
fn doorbell_forgets_no_sleeper() {
    loom::model(|| {
        let sleepers = Arc::new(Sleepers::default());
        let bell = Arc::new(LoomBell::default());
        let messages = Arc::new(AtomicUsize::new(0));
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let (sleepers, bell, messages) = (sleepers.clone(), bell.clone(), messages.clone());
                loom::thread::spawn(move || {
                    let has_data = || messages.load(Ordering::SeqCst) > 0;
                    loop {
                        let taken =
                            messages.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                        if taken {
                            return;
                        }
                        if sleepers.begin(has_data) {
                            bell.sleep_until_rung();
                            sleepers.end();
                            sleepers.woken_by_bell(&*bell, has_data);
                        }
                    }
                })
            })
            .collect();
        for _ in 0..2 {
            messages.fetch_add(1, Ordering::SeqCst);
            sleepers.published(&*bell);
        }
        for r in receivers {
            r.join().unwrap();
        }
        assert_eq!(messages.load(Ordering::SeqCst), 0);
    });
}
