//! The synchronization conformance cases with child processes (conformance.md D1–D5), written once
//! and run for every start method: `tests/sync.rs` instantiates them for forkserver and spawn under
//! libtest, `tests/sync_fork.rs` for fork in a single-threaded harness. See `tests/sync.rs` for what
//! they check and how.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use super::{Inbox, Outbox, channel, send, sigkill};
use multiproc::sync::AcquireError;
use multiproc::{
    Barrier, BoundedSemaphore, Condition, Context, Error, Event, Handle, Lock, Process, RLock, Semaphore, StartMethod,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub const PATIENCE: Duration = Duration::from_secs(10);
pub const SHORT: Duration = Duration::from_millis(100);

/// Starts `p` as a daemon: if a test fails while children still block, they end with the test
/// process instead of keeping it waiting for them at exit.
pub fn started(p: Process) -> Process {
    let mut p = p.with_daemon(true);
    p.start().expect("start");
    p
}

pub fn pid_of(p: &Process) -> i32 {
    p.pid().expect("a started process has a pid")
}

pub fn join_all(ps: &mut [Process]) {
    for p in ps {
        assert_eq!(p.join().unwrap(), 0, "{p}");
    }
}

pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

pub fn assert_between(elapsed: Duration, low: Duration, high: Duration) {
    assert!(elapsed >= low && elapsed <= high, "took {elapsed:?}, expected between {low:?} and {high:?}");
}

/// The scheduler state of the task whose `stat` file is `path` (`S`, `R`, `Z`, ...).
pub fn task_state(path: &str) -> Option<char> {
    let stat = std::fs::read_to_string(path).ok()?;
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
}

pub fn wait_until_asleep_at(path: &str) {
    loop {
        match task_state(path) {
            Some('S') => return,
            Some('Z' | 'X') | None => panic!("{path}: the task ended while the test waited for it to sleep"),
            _ => std::thread::yield_now(),
        }
    }
}

/// Waits until the main thread of process `pid` sleeps in the kernel (here: on a futex).
pub fn wait_until_asleep(pid: i32) {
    wait_until_asleep_at(&format!("/proc/{pid}/stat"));
}

/// Waits until thread `tid` of this process sleeps in the kernel.
pub fn wait_until_thread_asleep(tid: i32) {
    wait_until_asleep_at(&format!("/proc/self/task/{tid}/stat"));
}

pub fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// The next message if one arrives within `within`; `None` otherwise.
pub fn next_within(inbox: &Inbox, within: Duration) -> Option<String> {
    inbox.0.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    match inbox.0.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
        Err(e) => panic!("recv: {e}"),
    }
}

/// A message already queued, without waiting.
pub fn queued(inbox: &Inbox) -> Option<String> {
    inbox.0.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let got = match inbox.0.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => panic!("recv: {e}"),
    };
    inbox.0.set_nonblocking(false).unwrap();
    got
}

pub fn outbox_clone(out: &Outbox) -> Outbox {
    Handle::new(out.try_clone().unwrap())
}

/// Splits `"word 12 rest"` into `("word", 12)`.
pub fn tagged(message: &str) -> (String, u32) {
    let mut parts = message.split(' ');
    let tag = parts.next().unwrap().to_string();
    let id = parts.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad report {message:?}"));
    (tag, id)
}

// ---------------------------------------------------------------------------------------------
// Cases with child processes, run for each start method
// ---------------------------------------------------------------------------------------------

#[macro_export]
macro_rules! sync_suite {
    ($m:ident) => {
        $m!(lock_held_by_a_child_is_locked_everywhere);
        $m!(lock_excludes_processes);
        $m!(rlock_excludes_processes);
        $m!(semaphore_admits_at_most_its_value);
        $m!(semaphore_units_move_between_processes);
        $m!(killed_lock_owner_is_reported_until_recovered);
        $m!(killed_rlock_owner_is_reported_until_recovered);
        $m!(killed_condition_owner_is_reported_until_recovered);
        $m!(blocked_waiter_takes_over_from_a_killed_owner);
        $m!(event_set_by_a_child_wakes_the_parent);
        $m!(event_cleared_by_a_child_is_cleared_for_the_parent);
        $m!(condition_notify_wakes_one_waiter_at_a_time);
        $m!(condition_timeouts_then_notify_all_wakes_everyone);
        $m!(condition_notify_n_wakes_at_most_n);
        $m!(condition_wait_returns_true_when_a_child_notifies);
        $m!(condition_wait_for_sees_state_changed_by_a_child);
        $m!(barrier_parties_pass_in_lockstep_with_distinct_indices);
        $m!(barrier_timeout_breaks_it_for_every_party);
        $m!(barrier_abort_breaks_waiters_and_reset_restores_it);
        $m!(barrier_reset_breaks_waiters_then_works_again);
        $m!(barrier_party_killed_while_waiting_is_replaced_by_its_restart);
        $m!(barrier_party_killed_in_the_action_breaks_it_for_the_sleepers_at_once);
        $m!(barrier_thousand_passes_arrive_in_order);
        $m!(barrier_action_runs_once_per_cycle_before_anyone_leaves);
        $m!(barrier_default_timeout_applies_to_waits_in_children);
        $m!(killed_holder_leaves_no_shared_memory_behind);
    };
}

// --- Locks ------------------------------------------------------------------------------------

pub fn hold_both_until_told(lock: Lock, rlock: RLock, out: Outbox, go: Handle<UnixDatagram>) {
    let _guard = lock.acquire().expect("fresh lock");
    let _outer = rlock.acquire().expect("fresh rlock");
    let _inner = rlock.acquire().expect("recursive");
    send(&out, &format!("held {} {} {}", lock.locked(), rlock.locked(), rlock.is_owned()));
    let mut buf = [0u8; 8];
    let _ = go.recv(&mut buf);
}

// LOCK-02, LOCK-04, LOCK-06/07 (Debug names the child as owner) (and SMT-02/03: acquired in a child, seen from the parent)
pub fn lock_held_by_a_child_is_locked_everywhere(ctx: Context) {
    let (lock, rlock) = (Lock::new().unwrap(), RLock::new().unwrap());
    let (inbox, out) = channel();
    let (go, go_child) = UnixDatagram::pair().unwrap();
    let mut p = started(ctx.process(hold_both_until_told, (lock.clone(), rlock.clone(), out, Handle::new(go_child))));
    assert_eq!(inbox.recv(10), "held true true true");
    assert!(lock.locked() && rlock.locked());
    // LOCK-06, LOCK-07: the owner named by Debug is the child's main thread (tid = pid).
    let child = format!("owner: Some({})", pid_of(&p));
    assert!(format!("{lock:?}").contains(&child), "{lock:?}");
    assert!(format!("{rlock:?}").contains(&format!("{child}, count: 2")), "{rlock:?}");
    assert!(!rlock.is_owned());
    assert!(matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)));
    assert!(matches!(rlock.try_acquire(), Err(AcquireError::WouldBlock)));
    let start = Instant::now();
    assert!(matches!(lock.acquire_timeout(SHORT), Err(AcquireError::Timeout(t)) if t == SHORT));
    assert_between(start.elapsed(), SHORT, PATIENCE);
    go.send(b"go").unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(!lock.locked() && !rlock.locked());
    drop(lock.try_acquire().expect("released by the child"));
    drop(rlock.try_acquire().expect("released by the child"));
}

pub fn take_turns(lock: Lock, out: Outbox, id: u32, rounds: u32) {
    for _ in 0..rounds {
        let guard = lock.acquire().expect("nobody died");
        send(&out, &format!("enter {id}"));
        send(&out, &format!("leave {id}"));
        drop(guard);
    }
}

pub fn take_turns_recursively(lock: RLock, out: Outbox, id: u32, rounds: u32) {
    for _ in 0..rounds {
        let outer = lock.acquire().expect("nobody died");
        send(&out, &format!("enter {id}"));
        let inner = lock.acquire().expect("recursive");
        drop(outer);
        // Still held once: nobody else may enter.
        send(&out, &format!("leave {id}"));
        drop(inner);
    }
}

/// Reads `children * rounds` enter/leave pairs and checks that they strictly alternate, each leave
/// from the process that entered.
pub fn check_alternation(inbox: &Inbox, children: u32, rounds: u32) {
    let mut per_child = vec![0u32; children as usize];
    for _ in 0..children * rounds {
        let (tag, entered) = tagged(&inbox.recv(10));
        assert_eq!(tag, "enter", "two processes inside at once");
        let (tag, left) = tagged(&inbox.recv(10));
        assert_eq!((tag.as_str(), left), ("leave", entered), "another process reported while {entered} was inside");
        per_child[entered as usize] += 1;
    }
    assert!(per_child.iter().all(|&n| n == rounds), "{per_child:?}");
}

pub const TURN_CHILDREN: u32 = 4;
pub const TURN_ROUNDS: u32 = 100;

// Mutual exclusion across processes, observed from the order of reports.
pub fn lock_excludes_processes(ctx: Context) {
    let lock = Lock::new().unwrap();
    let (inbox, out) = channel();
    let mut ps: Vec<Process> = (0..TURN_CHILDREN)
        .map(|id| started(ctx.process(take_turns, (lock.clone(), outbox_clone(&out), id, TURN_ROUNDS))))
        .collect();
    check_alternation(&inbox, TURN_CHILDREN, TURN_ROUNDS);
    join_all(&mut ps);
    assert!(!lock.locked());
    assert_eq!(queued(&inbox), None);
}

pub fn rlock_excludes_processes(ctx: Context) {
    let lock = RLock::new().unwrap();
    let (inbox, out) = channel();
    let mut ps: Vec<Process> = (0..TURN_CHILDREN)
        .map(|id| started(ctx.process(take_turns_recursively, (lock.clone(), outbox_clone(&out), id, TURN_ROUNDS))))
        .collect();
    check_alternation(&inbox, TURN_CHILDREN, TURN_ROUNDS);
    join_all(&mut ps);
    assert!(!lock.locked());
}

// --- Semaphores -------------------------------------------------------------------------------

pub fn occupy(sem: Semaphore, go: Event, out: Outbox, id: u32, rounds: u32) {
    send(&out, &format!("trying {id}"));
    let unit = sem.acquire();
    send(&out, &format!("in {id}"));
    go.wait();
    send(&out, &format!("out {id}"));
    drop(unit);
    for _ in 0..rounds {
        let unit = sem.acquire();
        send(&out, &format!("in {id}"));
        send(&out, &format!("out {id}"));
        drop(unit);
    }
}

/// Follows in/out reports; returns the largest number inside at once.
pub struct Occupancy {
    inside: BTreeSet<u32>,
    most: usize,
    limit: usize,
}

impl Occupancy {
    fn note(&mut self, message: &str) {
        match tagged(message) {
            (tag, id) if tag == "in" => assert!(self.inside.insert(id), "{id} entered twice"),
            (tag, id) if tag == "out" => assert!(self.inside.remove(&id), "{id} left without entering"),
            _ => panic!("unexpected report {message:?}"),
        }
        self.most = self.most.max(self.inside.len());
        assert!(self.inside.len() <= self.limit, "{:?} inside a semaphore of {}", self.inside, self.limit);
    }
}

// SEM-01 across processes: Semaphore(N) shared by M > N processes admits at most N at a time, and
// exactly N while holders wait.
pub fn semaphore_admits_at_most_its_value(ctx: Context) {
    const UNITS: u32 = 2;
    const CHILDREN: u32 = 5;
    const ROUNDS: u32 = 50;
    let sem = Semaphore::new(UNITS).unwrap();
    let go = Event::new().unwrap();
    let (inbox, out) = channel();
    let mut ps: Vec<Process> = (0..CHILDREN)
        .map(|id| started(ctx.process(occupy, (sem.clone(), go.clone(), outbox_clone(&out), id, ROUNDS))))
        .collect();
    let mut occupancy = Occupancy { inside: BTreeSet::new(), most: 0, limit: UNITS as usize };
    let mut trying = BTreeSet::new();
    // Phase 1: every child tries; the holders wait for `go`, so exactly UNITS get in.
    while trying.len() < CHILDREN as usize || occupancy.inside.len() < UNITS as usize {
        let message = inbox.recv(10);
        match tagged(&message) {
            (tag, id) if tag == "trying" => assert!(trying.insert(id)),
            _ => occupancy.note(&message),
        }
    }
    assert_eq!(sem.value(), 0);
    assert!(sem.try_acquire().is_none());
    for (id, p) in ps.iter().enumerate() {
        if !occupancy.inside.contains(&(id as u32)) {
            wait_until_asleep(pid_of(p)); // inside `acquire`, the count at zero
        }
    }
    assert_eq!(queued(&inbox), None, "a process got in beyond the semaphore's value");
    // Phase 2: holders leave; everyone takes turns.
    go.set();
    let remaining = UNITS + (CHILDREN - UNITS) * 2 + CHILDREN * ROUNDS * 2;
    for _ in 0..remaining {
        occupancy.note(&inbox.recv(10));
    }
    join_all(&mut ps);
    assert!(occupancy.inside.is_empty());
    assert_eq!(occupancy.most, UNITS as usize);
    assert_eq!(sem.value(), UNITS);
}

pub fn take_units(sem: Semaphore, bounded: BoundedSemaphore, out: Outbox) {
    let taken = sem.acquire_unguarded(Some(PATIENCE)) && bounded.acquire_unguarded(None);
    let refused = bounded.try_acquire().is_none();
    send(&out, &format!("{taken} {refused} {} {}", sem.value(), bounded.value()));
}

pub fn release_units(sem: Semaphore, bounded: BoundedSemaphore, out: Outbox) {
    sem.release();
    let first = bounded.release().is_ok();
    let second = matches!(bounded.release(), Err(Error::InvalidState(_)));
    send(&out, &format!("{first} {second} {} {}", sem.value(), bounded.value()));
}

// SMT-04: units taken in a child are given back in the parent (and the reverse); a
// BoundedSemaphore refuses a release above its initial value in any process.
pub fn semaphore_units_move_between_processes(ctx: Context) {
    let sem = Semaphore::new(1).unwrap();
    let bounded = BoundedSemaphore::new(1).unwrap();
    let (inbox, out) = channel();
    let mut p = started(ctx.process(take_units, (sem.clone(), bounded.clone(), outbox_clone(&out))));
    assert_eq!(inbox.recv(10), "true true 0 0");
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!((sem.value(), bounded.value()), (0, 0));
    sem.release();
    bounded.release().unwrap();
    assert!(matches!(bounded.release(), Err(Error::InvalidState(m)) if m.contains("too many")));
    assert_eq!((sem.value(), bounded.value()), (1, 1));

    assert!(sem.acquire_unguarded(None) && bounded.acquire_unguarded(None));
    let mut p = started(ctx.process(release_units, (sem.clone(), bounded.clone(), out)));
    assert_eq!(inbox.recv(10), "true true 1 1");
    assert_eq!(p.join().unwrap(), 0);
}

// --- Owners killed with SIGKILL ---------------------------------------------------------------

pub fn hold_lock_forever(lock: Lock, out: Outbox) {
    let _guard = lock.acquire().expect("fresh lock");
    send(&out, &format!("holding {} {}", std::process::id(), gettid()));
    park_forever();
}

pub fn hold_rlock_twice_forever(lock: RLock, out: Outbox) {
    let _outer = lock.acquire().expect("fresh lock");
    let _inner = lock.acquire().expect("recursive");
    send(&out, &format!("holding {} {}", std::process::id(), gettid()));
    park_forever();
}

pub fn hold_condition_forever(cond: Condition, out: Outbox) {
    let _guard = cond.acquire().expect("fresh lock");
    send(&out, &format!("holding {} {}", std::process::id(), gettid()));
    park_forever();
}

/// Starts a holder, checks that it reports its main thread (tid = pid), kills it with SIGKILL.
/// With `reap`, the holder is joined before returning (its thread is gone rather than a zombie).
pub fn start_then_kill(mut p: Process, inbox: &Inbox, reap: bool) -> (i32, Process) {
    p.start().unwrap();
    let pid = pid_of(&p);
    assert_eq!(inbox.recv(10), format!("holding {pid} {pid}"));
    sigkill(pid);
    if reap {
        assert_eq!(p.join().unwrap(), -9);
    }
    (pid, p)
}

pub fn dead_thread<G>(result: Result<G, AcquireError<G>>) -> (u32, G)
where
    G: multiproc::sync::Guard,
{
    match result {
        Err(AcquireError::OwnerDied(died)) => (died.dead_thread(), died.into_guard()),
        Err(other) => panic!("expected OwnerDied, got {other}"),
        Ok(_) => panic!("expected OwnerDied, got a clean acquisition"),
    }
}

// A Lock whose holder is killed: the next acquirer gets it with OwnerDied naming the dead thread,
// every acquirer after that too until one recovers, then acquisitions are clean. (Holder killed
// and not yet reaped: a zombie holds nothing.)
pub fn killed_lock_owner_is_reported_until_recovered(ctx: Context) {
    let lock = Lock::new().unwrap();
    let (inbox, out) = channel();
    let (pid, mut p) = start_then_kill(ctx.process(hold_lock_forever, (lock.clone(), out)), &inbox, false);
    assert!(lock.locked());
    let start = Instant::now();
    let (dead, guard) = dead_thread(lock.acquire_timeout(Duration::from_secs(5)));
    assert_eq!(dead, pid as u32);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(lock.locked());
    drop(guard); // not recovered
    assert!(!lock.locked());
    let (again, guard) = dead_thread(lock.acquire_timeout(Duration::from_secs(5)));
    assert_eq!(again, pid as u32);
    drop(guard);
    match lock.acquire() {
        Err(AcquireError::OwnerDied(died)) => drop(died.recover()),
        other => panic!("expected OwnerDied again, got {other:?}"),
    }
    drop(lock.acquire().expect("recovered: clean"));
    drop(lock.try_acquire().expect("recovered: clean"));
    assert_eq!(p.join().unwrap(), -9);
}

// The same for an RLock held twice (holder reaped before the parent acquires).
pub fn killed_rlock_owner_is_reported_until_recovered(ctx: Context) {
    let lock = RLock::new().unwrap();
    let (inbox, out) = channel();
    let (pid, _p) = start_then_kill(ctx.process(hold_rlock_twice_forever, (lock.clone(), out)), &inbox, true);
    assert!(lock.locked() && !lock.is_owned());
    let (dead, guard) = dead_thread(lock.acquire_timeout(Duration::from_secs(5)));
    assert_eq!(dead, pid as u32);
    assert!(lock.is_owned());
    drop(guard); // one release frees it: the dead owner's depth is not inherited
    assert!(!lock.locked());
    let (again, guard) = dead_thread(lock.try_acquire());
    assert_eq!(again, pid as u32);
    drop(guard);
    match lock.acquire_timeout(Duration::from_secs(5)) {
        Err(AcquireError::OwnerDied(died)) => {
            let outer = died.recover();
            let inner = lock.acquire().expect("recursive and recovered");
            drop(outer);
            assert!(lock.locked());
            drop(inner);
        }
        other => panic!("expected OwnerDied again, got {other:?}"),
    }
    assert!(!lock.locked());
    drop(lock.acquire().expect("recovered: clean"));
}

// The lock of a Condition: its guard reports the death (`owner_died`), and the lock it was built
// over reports OwnerDied with the dead thread, until someone recovers.
pub fn killed_condition_owner_is_reported_until_recovered(ctx: Context) {
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    let (inbox, out) = channel();
    let (pid, mut p) = start_then_kill(ctx.process(hold_condition_forever, (cond.clone(), out)), &inbox, false);
    let guard = cond.acquire_timeout(Duration::from_secs(5)).expect("taken over from the dead owner");
    assert!(guard.owner_died());
    drop(guard); // not recovered
    let (dead, guard) = dead_thread(lock.acquire_timeout(Duration::from_secs(5)));
    assert_eq!(dead, pid as u32);
    drop(guard);
    let guard = cond.acquire().unwrap();
    assert!(guard.owner_died());
    guard.recover();
    assert!(!guard.owner_died());
    drop(guard);
    let mut guard = cond.acquire().unwrap();
    assert!(!guard.owner_died());
    assert!(!cond.wait(&mut guard, Some(Duration::ZERO)), "the condition still works");
    drop(guard);
    drop(lock.acquire().expect("recovered: clean"));
    assert_eq!(p.join().unwrap(), -9);

    // A default Condition (over an RLock) too.
    let cond = Condition::new().unwrap();
    let (inbox, out) = channel();
    let _ = start_then_kill(ctx.process(hold_condition_forever, (cond.clone(), out)), &inbox, true);
    let guard = cond.acquire_timeout(Duration::from_secs(5)).expect("taken over from the dead owner");
    assert!(guard.owner_died());
    guard.recover();
    drop(guard);
    assert!(!cond.acquire().unwrap().owner_died());
}

pub fn wait_for_lock(lock: Lock, out: Outbox) {
    send(&out, "trying");
    match lock.acquire() {
        Err(AcquireError::OwnerDied(died)) => {
            let dead = died.dead_thread();
            let guard = died.recover();
            send(&out, &format!("owner died {dead}"));
            drop(guard);
        }
        other => send(&out, &format!("unexpected {other:?}")),
    }
}

// A waiter already asleep in `acquire()` when the holder is killed gets the lock within a few
// liveness slices.
pub fn blocked_waiter_takes_over_from_a_killed_owner(ctx: Context) {
    let lock = Lock::new().unwrap();
    let (inbox, out) = channel();
    let mut holder = started(ctx.process(hold_lock_forever, (lock.clone(), outbox_clone(&out))));
    let holder_pid = pid_of(&holder);
    assert_eq!(inbox.recv(10), format!("holding {holder_pid} {holder_pid}"));
    let mut waiter = started(ctx.process(wait_for_lock, (lock.clone(), out)));
    assert_eq!(inbox.recv(10), "trying");
    wait_until_asleep(pid_of(&waiter));
    sigkill(holder_pid);
    assert_eq!(inbox.recv(5), format!("owner died {holder_pid}"));
    assert_eq!(waiter.join().unwrap(), 0);
    assert_eq!(holder.join().unwrap(), -9);
    drop(lock.try_acquire().expect("the waiter recovered and released"));
}

// --- Events -----------------------------------------------------------------------------------

pub fn compute_then_set(event: Event, out: Outbox) {
    let sum: u64 = (0..2_000_000u64).map(std::hint::black_box).sum();
    send(&out, &sum.to_string());
    event.set();
}

// EVT-01: a child computes, reports, then sets; the parent's wait returns true.
pub fn event_set_by_a_child_wakes_the_parent(ctx: Context) {
    let event = Event::new().unwrap();
    assert!(!event.is_set());
    assert!(!event.wait_timeout(Duration::ZERO));
    let start = Instant::now();
    assert!(!event.wait_timeout(SHORT));
    assert_between(start.elapsed(), SHORT, PATIENCE);

    let (inbox, out) = channel();
    let mut p = started(ctx.process(compute_then_set, (event.clone(), out)));
    assert!(event.wait_timeout(PATIENCE));
    assert!(event.is_set());
    // The report was sent before the event was set.
    assert_eq!(queued(&inbox).as_deref(), Some("1999999000000"));
    assert_eq!(p.join().unwrap(), 0);
    let start = Instant::now();
    assert!(event.wait_timeout(PATIENCE));
    event.wait();
    assert!(start.elapsed() < Duration::from_secs(1));
}

pub fn see_then_clear(event: Event, cleared: Event, out: Outbox) {
    let seen = event.is_set();
    event.wait();
    event.clear();
    let after = event.wait_timeout(Duration::from_millis(1));
    send(&out, &format!("{seen} {after}"));
    cleared.set();
}

// SMT-01: a child sees the parent's set, clears; the parent sees it cleared.
pub fn event_cleared_by_a_child_is_cleared_for_the_parent(ctx: Context) {
    let (event, cleared) = (Event::new().unwrap(), Event::new().unwrap());
    event.set();
    let (inbox, out) = channel();
    let mut p = started(ctx.process(see_then_clear, (event.clone(), cleared.clone(), out)));
    assert_eq!(inbox.recv(10), "true false");
    assert!(cleared.wait_timeout(PATIENCE));
    assert!(!event.is_set());
    assert!(!event.wait_timeout(Duration::ZERO));
    assert_eq!(p.join().unwrap(), 0);
}

// --- Conditions -------------------------------------------------------------------------------

pub fn wait_on_condition(cond: Condition, out: Outbox, id: u32) {
    let mut guard = cond.acquire().unwrap();
    send(&out, &format!("waiting {id}"));
    let notified = cond.wait(&mut guard, None);
    // Reported under the lock, before anyone else can be told.
    send(&out, &format!("woken {id} {notified}"));
}

pub fn wait_on_condition_briefly(cond: Condition, out: Outbox, id: u32) {
    let mut guard = cond.acquire().unwrap();
    let start = Instant::now();
    let notified = cond.wait(&mut guard, Some(SHORT));
    send(&out, &format!("timed {id} {notified} {}", start.elapsed() >= SHORT));
}

/// Starts `n` condition waiters (ids from `first`) and returns once every one of them sleeps in
/// `wait`: each reported while holding the lock and releases it only in `wait`, so once the parent
/// holds the lock all of them are past their release; then each one's state is `S`.
pub fn start_waiters(ctx: &Context, cond: &Condition, inbox: &Inbox, out: &Outbox, first: u32, n: u32) -> Vec<Process> {
    let ps: Vec<Process> = (first..first + n)
        .map(|id| started(ctx.process(wait_on_condition, (cond.clone(), outbox_clone(out), id))))
        .collect();
    let mut waiting = BTreeSet::new();
    for _ in 0..n {
        let (tag, id) = tagged(&inbox.recv(10));
        assert_eq!(tag, "waiting");
        waiting.insert(id);
    }
    assert_eq!(waiting, (first..first + n).collect());
    drop(cond.acquire().unwrap());
    for p in &ps {
        wait_until_asleep(pid_of(p));
    }
    ps
}

/// Notifies `n` (under the lock) and collects the reports of the woken.
pub fn notify_and_collect(cond: &Condition, inbox: &Inbox, n: u32, expect: usize) -> BTreeSet<u32> {
    let guard = cond.acquire().unwrap();
    cond.notify(&guard, n);
    drop(guard);
    let mut woken = BTreeSet::new();
    for _ in 0..expect {
        let message = inbox.recv(10);
        assert!(message.ends_with(" true"), "{message}");
        let (tag, id) = tagged(&message);
        assert_eq!(tag, "woken");
        assert!(woken.insert(id));
    }
    // No further waiter wakes (a wrong implementation gets a window to show it).
    assert_eq!(next_within(inbox, SHORT), None, "more than {n} woke");
    woken
}

// COND-01: waiters in two processes and one thread; each notify wakes exactly one; nobody wakes
// without a notify.
pub fn condition_notify_wakes_one_waiter_at_a_time(ctx: Context) {
    let cond = Condition::new().unwrap();
    let (inbox, out) = channel();
    let thread_waiter = {
        let (cond, out) = (cond.clone(), outbox_clone(&out));
        std::thread::spawn(move || {
            let mut guard = cond.acquire().unwrap();
            send(&out, &format!("waiting 100 {}", gettid()));
            let notified = cond.wait(&mut guard, None);
            send(&out, &format!("woken 100 {notified}"));
        })
    };
    let report = inbox.recv(10);
    let tid: i32 = report.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(tagged(&report), ("waiting".to_string(), 100));
    let mut ps = start_waiters(&ctx, &cond, &inbox, &out, 0, 2);
    wait_until_thread_asleep(tid);
    assert_eq!(queued(&inbox), None, "woken without a notify");
    let mut all = BTreeSet::new();
    for _ in 0..3 {
        let woken = notify_and_collect(&cond, &inbox, 1, 1);
        assert!(all.is_disjoint(&woken));
        all.extend(woken);
    }
    assert_eq!(all, BTreeSet::from([0, 1, 100]));
    // A notify with nobody waiting changes nothing.
    notify_and_collect(&cond, &inbox, 1, 0);
    thread_waiter.join().unwrap();
    join_all(&mut ps);
}

// COND-02 (and COND-04 in children): timed waiters all time out; then one notify_all wakes every
// untimed waiter.
pub fn condition_timeouts_then_notify_all_wakes_everyone(ctx: Context) {
    let cond = Condition::new().unwrap();
    let (inbox, out) = channel();
    let mut timed: Vec<Process> = (0..3)
        .map(|id| started(ctx.process(wait_on_condition_briefly, (cond.clone(), outbox_clone(&out), id))))
        .collect();
    let mut reports: Vec<String> = (0..3).map(|_| inbox.recv(10)).collect();
    reports.sort();
    assert_eq!(reports, ["timed 0 false true", "timed 1 false true", "timed 2 false true"]);
    join_all(&mut timed);

    let mut ps = start_waiters(&ctx, &cond, &inbox, &out, 0, 4);
    let guard = cond.acquire().unwrap();
    cond.notify_all(&guard);
    drop(guard);
    let woken: BTreeSet<String> = (0..4).map(|_| inbox.recv(10)).collect();
    assert_eq!(woken, (0..4).map(|id| format!("woken {id} true")).collect());
    join_all(&mut ps);
}

// COND-03: notify(2) wakes exactly 2 of 6 sleeping waiters, notify(4) the other 4, notify(3) with
// nobody waiting changes nothing.
pub fn condition_notify_n_wakes_at_most_n(ctx: Context) {
    let cond = Condition::new().unwrap();
    let (inbox, out) = channel();
    let mut ps = start_waiters(&ctx, &cond, &inbox, &out, 0, 6);
    let first = notify_and_collect(&cond, &inbox, 2, 2);
    for (id, p) in ps.iter().enumerate() {
        if !first.contains(&(id as u32)) {
            assert_eq!(task_state(&format!("/proc/{}/stat", pid_of(p))), Some('S'), "waiter {id} should still sleep");
        }
    }
    let second = notify_and_collect(&cond, &inbox, 4, 4);
    assert!(first.is_disjoint(&second));
    assert_eq!(first.len() + second.len(), 6);
    notify_and_collect(&cond, &inbox, 3, 0);
    join_all(&mut ps);
}

pub fn notify_once(cond: Condition) {
    let guard = cond.acquire().unwrap();
    cond.notify(&guard, 1);
}

// COND-04, COND-07 (without the SIGINT part): wait(0) and wait(t) return false, wait(60 s) returns
// true when a child notifies.
pub fn condition_wait_returns_true_when_a_child_notifies(ctx: Context) {
    let cond = Condition::new().unwrap();
    let mut guard = cond.acquire().unwrap();
    assert!(!cond.wait(&mut guard, Some(Duration::ZERO)));
    let start = Instant::now();
    assert!(!cond.wait(&mut guard, Some(SHORT)));
    assert_between(start.elapsed(), SHORT, PATIENCE);
    // The child needs the lock to notify, which it gets only once the parent waits.
    let mut p = started(ctx.process(notify_once, (cond.clone(),)));
    let start = Instant::now();
    assert!(cond.wait(&mut guard, Some(Duration::from_secs(60))));
    assert!(start.elapsed() < Duration::from_secs(20));
    drop(guard);
    assert_eq!(p.join().unwrap(), 0);
}

pub fn add_units_under_condition(cond: Condition, units: Semaphore, done: Event, n: u32) {
    for _ in 0..n {
        let guard = cond.acquire().unwrap();
        units.release();
        cond.notify_all(&guard);
    }
    let guard = cond.acquire().unwrap();
    done.set();
    cond.notify_all(&guard);
}

// COND-05, COND-06: wait_for over state shared with a child (a Semaphore's value, an Event).
pub fn condition_wait_for_sees_state_changed_by_a_child(ctx: Context) {
    let cond = Condition::new().unwrap();
    let units = Semaphore::new(0).unwrap();
    let done = Event::new().unwrap();
    let mut guard = cond.acquire().unwrap();
    let start = Instant::now();
    assert!(!cond.wait_for(&mut guard, || units.value() > 0, Some(SHORT)));
    assert_between(start.elapsed(), SHORT, PATIENCE);

    let mut p = started(ctx.process(add_units_under_condition, (cond.clone(), units.clone(), done.clone(), 3)));
    assert!(cond.wait_for(&mut guard, || units.value() >= 3, Some(PATIENCE)));
    assert!(cond.wait_for(&mut guard, || done.is_set(), Some(PATIENCE)));
    assert_eq!(units.value(), 3);
    assert!(cond.wait_for(&mut guard, || true, Some(Duration::ZERO)));
    drop(guard);
    assert_eq!(p.join().unwrap(), 0);
}

// --- Barriers ---------------------------------------------------------------------------------

pub fn pass_rounds(barrier: Barrier, out: Outbox, id: u32, rounds: u32) {
    for round in 0..rounds {
        send(&out, &format!("before {round} {id}"));
        let index = barrier.wait().expect("not broken");
        send(&out, &format!("index {round} {id} {index}"));
    }
}

/// The children's reports of `pass_rounds`, checked as they come.
pub struct Lockstep {
    indices: Vec<BTreeSet<u32>>,
    passed: usize,
    announced: [u32; 10],
}

impl Lockstep {
    /// `round`: the round the parent is about to wait in.
    fn note(&mut self, message: &str, round: usize) {
        let parts: Vec<usize> = message.split(' ').skip(1).map(|n| n.parse().unwrap()).collect();
        let r = parts[0];
        if message.starts_with("before") {
            assert!(r <= round, "{message} before the parent passed round {}", r - 1);
            assert!(r == 0 || self.announced[r - 1] == 3, "{message} before every child announced round {}", r - 1);
            self.announced[r] += 1;
        } else {
            self.passed += 1;
            assert!(self.indices[r].insert(parts[2] as u32), "{message}: index given twice");
        }
    }
}

// BAR-01, BAR-02: 4 parties (3 children and the parent) pass 10 rounds in lockstep (nobody
// announces round r+1 before every child announced round r); every round they get the distinct
// indices 0..4; afterwards nobody waits and the barrier is not broken.
pub fn barrier_parties_pass_in_lockstep_with_distinct_indices(ctx: Context) {
    const ROUNDS: usize = 10;
    let barrier = Barrier::new(4).unwrap();
    assert_eq!(barrier.parties(), 4);
    assert_eq!(barrier.n_waiting(), 0);
    let (inbox, out) = channel();
    let mut ps: Vec<Process> = (0..3)
        .map(|id| started(ctx.process(pass_rounds, (barrier.clone(), outbox_clone(&out), id, ROUNDS as u32))))
        .collect();
    let mut seen = Lockstep { indices: vec![BTreeSet::new(); ROUNDS], passed: 0, announced: [0; ROUNDS] };
    let mut parent_indices = Vec::new();
    for round in 0..ROUNDS {
        while seen.announced[round] < 3 {
            seen.note(&inbox.recv(10), round);
        }
        parent_indices.push(barrier.wait().expect("not broken"));
    }
    while seen.passed < 3 * ROUNDS {
        seen.note(&inbox.recv(10), ROUNDS);
    }
    join_all(&mut ps);
    for (round, indices) in seen.indices.iter_mut().enumerate() {
        assert!(indices.insert(parent_indices[round]), "round {round}: the parent's index given twice");
        assert_eq!(indices, &(0..4).collect::<BTreeSet<u32>>(), "round {round}");
    }
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
}

pub fn wait_with_timeout(barrier: Barrier, out: Outbox, id: u32, millis: u64) {
    let outcome = barrier.wait_timeout(Duration::from_millis(millis));
    send(&out, &format!("{id} {}", matches!(outcome, Err(Error::BrokenBarrier))));
}

// BAR-07: a party never arrives; every waiter's wait_timeout breaks the barrier for all.
pub fn barrier_timeout_breaks_it_for_every_party(ctx: Context) {
    let barrier = Barrier::new(4).unwrap();
    let (inbox, out) = channel();
    let mut ps: Vec<Process> = (0..2)
        .map(|id| started(ctx.process(wait_with_timeout, (barrier.clone(), outbox_clone(&out), id, 5_000))))
        .collect();
    while barrier.n_waiting() < 2 {
        std::thread::yield_now();
    }
    let start = Instant::now();
    assert!(matches!(barrier.wait_timeout(Duration::from_millis(300)), Err(Error::BrokenBarrier)));
    assert_between(start.elapsed(), Duration::from_millis(300), PATIENCE);
    let reports: BTreeSet<String> = (0..2).map(|_| inbox.recv(10)).collect();
    assert_eq!(reports, BTreeSet::from(["0 true".to_string(), "1 true".to_string()]));
    join_all(&mut ps);
    assert!(barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
    // Broken until reset: a new waiter fails at once.
    assert!(matches!(barrier.wait_timeout(PATIENCE), Err(Error::BrokenBarrier)));
}

/// Counts barrier cycles for [`count_cycle`]; set by each party of
/// `barrier_action_runs_once_per_cycle_before_anyone_leaves` before it waits.
pub static CYCLES: std::sync::OnceLock<Semaphore> = std::sync::OnceLock::new();

/// A barrier action (a plain `fn()`): one unit per completed cycle.
pub fn count_cycle() {
    CYCLES.get().expect("the party set CYCLES before waiting").release();
}

pub fn pass_and_check_cycles(barrier: Barrier, cycles: Semaphore, out: Outbox, id: u32, rounds: u32) {
    let _ = CYCLES.set(cycles);
    let cycles = CYCLES.get().unwrap();
    let mut bad = Vec::new();
    for round in 0..rounds {
        barrier.wait().expect("not broken");
        // This party has not arrived for the next cycle yet, so its action cannot have run: the
        // count is exact.
        if cycles.value() != round + 1 {
            bad.push((round, cycles.value()));
        }
    }
    send(&out, &format!("{id} {bad:?}"));
}

// BAR-03: the action runs exactly once per cycle, in whichever process arrives last (it travels to
// spawned children signed, and is found again in their copy of the binary), before any party is
// released.
pub fn barrier_action_runs_once_per_cycle_before_anyone_leaves(ctx: Context) {
    const ROUNDS: u32 = 20;
    let cycles = Semaphore::new(0).unwrap();
    let barrier = Barrier::with_action(3, count_cycle).unwrap();
    let (inbox, out) = channel();
    let mut ps: Vec<Process> = (0..3)
        .map(|id| {
            started(
                ctx.process(pass_and_check_cycles, (barrier.clone(), cycles.clone(), outbox_clone(&out), id, ROUNDS)),
            )
        })
        .collect();
    let reports: BTreeSet<String> = (0..3).map(|_| inbox.recv(20)).collect();
    assert_eq!(reports, (0..3).map(|id| format!("{id} []")).collect::<BTreeSet<_>>());
    join_all(&mut ps);
    assert_eq!(cycles.value(), ROUNDS);
    assert!(!barrier.broken());
}

pub fn wait_without_timeout(barrier: Barrier, out: Outbox) {
    let start = Instant::now();
    let outcome = barrier.wait();
    send(&out, &format!("{} {}", matches!(outcome, Err(Error::BrokenBarrier)), start.elapsed().as_millis()));
}

// BAR-08: a barrier's default timeout, set in the parent, bounds a plain `wait()` in a child: the
// wait breaks the barrier after about that time.
pub fn barrier_default_timeout_applies_to_waits_in_children(ctx: Context) {
    let barrier = Barrier::new(2).unwrap().with_default_timeout(SHORT);
    let (inbox, out) = channel();
    let mut p = started(ctx.process(wait_without_timeout, (barrier.clone(), out)));
    let report = inbox.recv(10);
    let (broken, millis) = report.split_once(' ').unwrap();
    assert_eq!(broken, "true", "{report}");
    assert_between(Duration::from_millis(millis.parse().unwrap()), SHORT, PATIENCE);
    join_all(std::slice::from_mut(&mut p));
    assert!(barrier.broken());
}

pub fn wait_broken_then_pass(barrier: Barrier, sync: Barrier, out: Outbox, id: u32) {
    let first = matches!(barrier.wait(), Err(Error::BrokenBarrier));
    send(&out, &format!("broken {id} {first}"));
    sync.wait().expect("sync barrier");
    let index = barrier.wait().expect("usable again");
    send(&out, &format!("passed {id} {index}"));
}

/// Two children wait on `barrier` (3 parties); `breaker` breaks it; every waiter and the parent see
/// it broken; after a reset (ordered by a second barrier) all three pass.
pub fn break_then_reuse(ctx: &Context, breaker: impl FnOnce(&Barrier)) {
    let barrier = Barrier::new(3).unwrap();
    let sync = Barrier::new(3).unwrap();
    let (inbox, out) = channel();
    let mut ps: Vec<Process> = (0..2)
        .map(|id| started(ctx.process(wait_broken_then_pass, (barrier.clone(), sync.clone(), outbox_clone(&out), id))))
        .collect();
    while barrier.n_waiting() < 2 {
        std::thread::yield_now();
    }
    breaker(&barrier);
    let reports: BTreeSet<String> = (0..2).map(|_| inbox.recv(10)).collect();
    assert_eq!(reports, BTreeSet::from(["broken 0 true".to_string(), "broken 1 true".to_string()]));
    barrier.reset();
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
    sync.wait().unwrap();
    let mut indices = BTreeSet::from([barrier.wait().expect("usable after reset")]);
    for _ in 0..2 {
        let message = inbox.recv(10);
        assert!(message.starts_with("passed"), "{message}");
        indices.insert(message.rsplit(' ').next().unwrap().parse().unwrap());
    }
    join_all(&mut ps);
    assert_eq!(indices, BTreeSet::from([0, 1, 2]));
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

// BAR-04, BAR-06: abort breaks the barrier for the waiters (and later callers); after a reset all
// parties pass again.
pub fn barrier_abort_breaks_waiters_and_reset_restores_it(ctx: Context) {
    break_then_reuse(&ctx, |barrier| {
        barrier.abort();
        assert!(barrier.broken());
        assert_eq!(barrier.n_waiting(), 0);
        assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    });
}

// BAR-05: a reset while parties wait makes them get BrokenBarrier; the barrier then works for all.
pub fn barrier_reset_breaks_waiters_then_works_again(ctx: Context) {
    break_then_reuse(&ctx, |barrier| {
        barrier.reset();
        assert!(!barrier.broken());
    });
}

pub fn wait_and_report(barrier: Barrier, out: Outbox, id: u32) {
    send(&out, &format!("waiting {id}"));
    let outcome = barrier.wait();
    send(&out, &format!("passed {id} {}", outcome.is_ok()));
}

// A party killed with SIGKILL while it sleeps in `wait()` is withdrawn: the generation waits for
// its replacement, which takes its place; nobody passes early and the barrier does not break.
pub fn barrier_party_killed_while_waiting_is_replaced_by_its_restart(ctx: Context) {
    let barrier = Barrier::new(3).unwrap();
    let (inbox, out) = channel();
    let mut doomed = started(ctx.process(wait_and_report, (barrier.clone(), outbox_clone(&out), 0)));
    assert_eq!(inbox.recv(10), "waiting 0");
    while barrier.n_waiting() < 1 {
        std::thread::yield_now();
    }
    wait_until_asleep(pid_of(&doomed)); // past the barrier's internal lock, asleep on its phase
    sigkill(pid_of(&doomed));
    assert_eq!(doomed.join().unwrap(), -9);
    let mut other = started(ctx.process(wait_and_report, (barrier.clone(), outbox_clone(&out), 1)));
    assert_eq!(inbox.recv(10), "waiting 1");
    // Two live parties of three: nobody passes (the dead one's arrival does not count).
    assert!(next_within(&inbox, SHORT).is_none(), "a party passed with a dead party counted");
    let mut replacement = started(ctx.process(wait_and_report, (barrier.clone(), out, 0)));
    assert_eq!(inbox.recv(10), "waiting 0");
    assert!(barrier.wait_timeout(PATIENCE).is_ok(), "the replacement takes the dead party's place");
    let mut passed = [inbox.recv(10), inbox.recv(10)];
    passed.sort();
    assert_eq!(passed, ["passed 0 true", "passed 1 true"]);
    assert_eq!(other.join().unwrap(), 0);
    assert_eq!(replacement.join().unwrap(), 0);
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

/// A barrier action that never ends (the test kills the party running it).
pub fn park_in_the_action() {
    park_forever();
}

// The last party runs the action inside the barrier's internal lock and is killed there: the two
// sleepers wake with BrokenBarrier promptly (about two owner-check intervals), not when
// someone happens to call `abort`.
pub fn barrier_party_killed_in_the_action_breaks_it_for_the_sleepers_at_once(ctx: Context) {
    let barrier = Barrier::with_action(3, park_in_the_action).unwrap();
    let (inbox, out) = channel();
    let mut sleepers: Vec<Process> = (0..2)
        .map(|id| {
            let p = started(ctx.process(wait_and_report, (barrier.clone(), outbox_clone(&out), id)));
            assert_eq!(inbox.recv(10), format!("waiting {id}"));
            p
        })
        .collect();
    while barrier.n_waiting() < 2 {
        std::thread::yield_now();
    }
    for p in &sleepers {
        wait_until_asleep(pid_of(p));
    }
    let mut last = started(ctx.process(wait_and_report, (barrier.clone(), out, 2)));
    assert_eq!(inbox.recv(10), "waiting 2");
    while barrier.n_waiting() < 3 {
        std::thread::yield_now();
    }
    wait_until_asleep(pid_of(&last)); // parked in the action, holding the internal lock
    sigkill(pid_of(&last));
    let killed = Instant::now();
    let mut outcomes = [inbox.recv(5), inbox.recv(5)];
    let woke_after = killed.elapsed();
    outcomes.sort();
    assert_eq!(outcomes, ["passed 0 false", "passed 1 false"]);
    assert!(woke_after < Duration::from_secs(2), "the sleepers woke {woke_after:?} after the death");
    assert_eq!(last.join().unwrap(), -9);
    join_all(&mut sleepers);
    assert!(barrier.broken());
    assert!(matches!(barrier.wait_timeout(SHORT), Err(Error::BrokenBarrier)));
    barrier.reset();
    assert!(!barrier.broken());
}

pub fn pass_and_send(barrier: Barrier, lock: Lock, out: Outbox, passes: u32) {
    for i in 0..passes {
        barrier.wait().expect("not broken");
        let _guard = lock.acquire().expect("nobody died");
        send(&out, &i.to_string());
    }
}

// BAR-10: many consecutive passes by several processes sending their pass number under a Lock
// arrive in order.
pub fn barrier_thousand_passes_arrive_in_order(ctx: Context) {
    const PARTIES: u32 = 3;
    const PASSES: u32 = 1000;
    let barrier = Barrier::new(PARTIES).unwrap();
    let lock = Lock::new().unwrap();
    let (inbox, out) = channel();
    let mut ps: Vec<Process> = (0..PARTIES)
        .map(|_| started(ctx.process(pass_and_send, (barrier.clone(), lock.clone(), outbox_clone(&out), PASSES))))
        .collect();
    for i in 0..PASSES {
        for _ in 0..PARTIES {
            assert_eq!(inbox.recv(10), i.to_string());
        }
    }
    join_all(&mut ps);
}

// --- No shared memory left behind -----------------------------------------------------------

/// (device, inode) of every memory file of this crate this process holds a descriptor of.
pub fn own_memfds() -> BTreeSet<(u64, u64)> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let link = std::fs::read_link(entry.path()).unwrap_or_default();
        if link.to_string_lossy().starts_with("/memfd:multiproc")
            && let Ok(meta) = std::fs::metadata(entry.path())
        {
            found.insert((meta.dev(), meta.ino()));
        }
    }
    found
}

/// Processes (this one included) that hold one of `inodes` open or mapped.
pub fn holders_of(inodes: &BTreeSet<u64>) -> Vec<String> {
    let mut holders = Vec::new();
    for proc_entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = proc_entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) {
            for fd in fds.flatten() {
                let is_ours = std::fs::read_link(fd.path())
                    .is_ok_and(|link| link.to_string_lossy().starts_with("/memfd:multiproc"));
                if is_ours && std::fs::metadata(fd.path()).is_ok_and(|m| inodes.contains(&m.ino())) {
                    holders.push(format!("{pid} (fd)"));
                }
            }
        }
        if let Ok(maps) = std::fs::read_to_string(proc_entry.path().join("maps")) {
            for line in maps.lines().filter(|l| l.contains("/memfd:multiproc")) {
                let inode = line.split_whitespace().nth(4).and_then(|i| i.parse::<u64>().ok());
                if inode.is_some_and(|i| inodes.contains(&i)) {
                    holders.push(format!("{pid} (mapping)"));
                }
            }
        }
    }
    holders
}

pub fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

pub type Everything = (Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier);

pub fn hold_everything(all: Everything, out: Outbox) {
    let (lock, rlock, sem, bounded, event, cond, barrier) = all;
    let _l = lock.acquire().unwrap();
    let _r = rlock.acquire().unwrap();
    let _s = sem.acquire();
    let _b = bounded.acquire();
    let _c = cond.acquire().unwrap();
    event.set();
    send(&out, &format!("holding {}", barrier.parties()));
    park_forever();
}

/// Runs in a child of the test, so that no other test's primitives are counted: creates every
/// primitive, hands them to a grandchild that takes them and is killed with SIGKILL, drops its
/// copies, and checks that no descriptor or mapping of that memory is left anywhere. Reports
/// "clean", or the failure.
pub fn leak_check(report: Outbox, method: StartMethod) {
    let outcome = std::panic::catch_unwind(|| check_no_leak(method));
    let message = match outcome {
        Ok(()) => "clean".to_string(),
        Err(panic) => match (panic.downcast_ref::<String>(), panic.downcast_ref::<&str>()) {
            (Some(text), _) => format!("failed: {text}"),
            (_, Some(text)) => format!("failed: {text}"),
            _ => "failed".to_string(),
        },
    };
    send(&report, &message);
}

pub fn check_no_leak(method: StartMethod) {
    let before = own_memfds();
    let shm_before = dev_shm();
    let all: Everything = (
        Lock::new().unwrap(),
        RLock::new().unwrap(),
        Semaphore::new(1).unwrap(),
        BoundedSemaphore::new(1).unwrap(),
        Event::new().unwrap(),
        Condition::new().unwrap(),
        Barrier::new(2).unwrap(),
    );
    let ours: BTreeSet<(u64, u64)> = own_memfds().difference(&before).copied().collect();
    // One memory file per primitive; the condition and the barrier have two (the condition: its lock
    // and its own state; the barrier: its state and its arrival slots).
    assert_eq!(ours.len(), 9, "memory files of the primitives: {ours:?}");
    let inodes: BTreeSet<u64> = ours.iter().map(|&(_, ino)| ino).collect();
    let (inbox, out) = channel();
    let mut holder = Process::new(hold_everything, (all.clone(), out)).with_start_method(method).with_daemon(true);
    holder.start().unwrap();
    assert_eq!(inbox.recv(10), "holding 2");
    sigkill(holder.pid().unwrap());
    assert_eq!(holder.join().unwrap(), -9);
    drop(holder);
    assert_eq!(own_memfds().difference(&before).count(), 9, "the parent's copies are still here");
    // The scan finds a holder while there is one (this process: descriptors and mappings).
    let me = std::process::id().to_string();
    assert_eq!(holders_of(&inodes).iter().filter(|h| h.starts_with(&format!("{me} "))).count(), 18);
    drop(all);
    let left: BTreeSet<(u64, u64)> = own_memfds().difference(&before).copied().collect();
    assert!(left.is_empty(), "memory files left after dropping every copy: {left:?}");
    let holders = holders_of(&inodes);
    assert!(holders.is_empty(), "processes still holding the memory: {holders:?}");
    let shm_after = dev_shm();
    let new_entries: Vec<&String> = shm_after.difference(&shm_before).collect();
    assert!(new_entries.is_empty(), "new /dev/shm entries: {new_entries:?}");
}

// The memory behind every primitive is an anonymous memory file: nothing in /dev/shm, and nothing
// left once the last holder is gone, even when a holder was killed with SIGKILL.
pub fn killed_holder_leaves_no_shared_memory_behind(ctx: Context) {
    let (inbox, out) = channel();
    // Not a daemon: it starts a child of its own.
    let mut p = ctx.process(leak_check, (out, ctx.start_method()));
    p.start().unwrap();
    assert_eq!(inbox.recv(20), "clean");
    assert_eq!(p.join().unwrap(), 0);
}
