//! The robust lock under a kill storm (issue 18): contender processes take a lock in turn and count
//! themselves in and out of the critical section in shared memory; the test kills some of them with
//! `SIGKILL` inside the critical section and some outside, starts replacements, and keeps the CPUs
//! busy with spinning processes of its own. Every lock kind is stormed: [`Lock`], [`RLock`] (taken
//! twice), and [`Condition`] over either (with waits and notifications inside).
//!
//! It asserts what the robust lock promises: nobody is ever inside together with someone else (0
//! violations, also under CPU load, where a waiter's owner check runs while the lock changes hands),
//! and every death inside the critical section is reported exactly once (one `OwnerDied` per death
//! inside, naming the dead thread; none for a death outside).
//!
//! Deaths are placed, not guessed: the test asks a contender to stop inside (or outside) the
//! critical section, waits until it says it has, and kills it there; in between, the lock changes
//! hands hundreds of times at full speed. Forked children need a single-threaded parent, so this
//! binary has no libtest harness; `alarm(2)` is the watchdog of each case (see `ForkHarness`).
//! `LOCK_STRESS_KILLS=n` sets the kills per lock kind (default 16).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::sync::{AcquireError, OWNER_CHECK_INTERVAL};
use multiproc::{Barrier, Condition, Lock, Process, RLock, RawArray};

/// Locks stormed at once, and contender processes per lock.
const LOCKS: usize = 2;
const CONTENDERS: usize = 5;
/// Spinning processes that load the CPUs during a storm.
const BUSY: usize = 2;

// The shared counters (one `RawArray<u64>`).
const INSIDE: usize = 0;
const VIOLATIONS: usize = 1;
const ENTRIES: usize = 2;
const REPORTS: usize = 3;
const STOP: usize = 4;
const LOG_LEN: usize = 5;
/// Per contender: what the test asks of it (`PARK_*`) and where it is (`PARKED_*`).
const PARK: usize = 8;
const PHASE: usize = PARK + CONTENDERS;
/// The dead threads the `OwnerDied` reports named, in order.
const LOG: usize = 32;
const LOG_CAP: usize = 256;
const SIZE: usize = LOG + LOG_CAP;

/// One stay in this many is about one owner-check interval long.
const LONG_STAY_ONE_IN: u64 = 1024;

const PARK_INSIDE: u64 = 1;
const PARK_OUTSIDE: u64 = 2;

#[derive(Clone)]
enum Subject {
    Lock(Lock),
    RLock(RLock),
    Condition(Condition),
}

struct Counters(RawArray<u64>);

impl Counters {
    fn at(&self, i: usize) -> &AtomicU64 {
        &self.0.cells()[i]
    }

    fn get(&self, i: usize) -> u64 {
        self.at(i).load(Ordering::SeqCst)
    }

    fn add(&self, i: usize) -> u64 {
        self.at(i).fetch_add(1, Ordering::SeqCst)
    }

    /// An `OwnerDied` report naming `dead` (0: not named, as with a `Condition`).
    fn report(&self, dead: u32) {
        self.add(REPORTS);
        let at = self.add(LOG_LEN) as usize;
        if at < LOG_CAP {
            self.at(LOG + at).store(u64::from(dead), Ordering::SeqCst);
        }
    }

    fn enter(&self) {
        if self.add(INSIDE) != 0 {
            self.add(VIOLATIONS);
        }
        self.add(ENTRIES);
    }

    /// Stays inside for a while, checking that nobody else came in; parks here if asked to.
    fn dwell(&self, me: usize, rng: &mut impl FnMut() -> u64) {
        if self.get(PARK + me) == PARK_INSIDE {
            self.at(PHASE + me).store(PARK_INSIDE, Ordering::SeqCst);
            park_forever();
        }
        // Mostly short stays; now and then one just shorter than a waiter's owner-check interval
        // (spent asleep, so that many locks can be stormed at once on few CPUs): the waiters that
        // went to sleep when it began then check the owner right after it has left, while the lock
        // changes hands.
        if rng().is_multiple_of(LONG_STAY_ONE_IN) {
            std::thread::sleep(OWNER_CHECK_INTERVAL.mul_f64(0.985 + (rng() % 150) as f64 / 10_000.0));
        } else {
            for _ in 0..rng() % 256 {
                std::hint::spin_loop();
            }
        }
        if self.get(INSIDE) != 1 {
            self.add(VIOLATIONS);
        }
    }

    fn leave(&self) {
        self.at(INSIDE).fetch_sub(1, Ordering::SeqCst);
    }
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// A contender: takes the lock in turn until told to stop, reporting `OwnerDied` and recovering.
fn contend(subject: Subject, counters: Counters, me: usize, seed: u64) {
    let mut rng = common::xorshift(seed);
    let c = &counters;
    while c.get(STOP) == 0 {
        match &subject {
            Subject::Lock(lock) => {
                let guard = match lock.acquire() {
                    Ok(guard) => guard,
                    Err(AcquireError::OwnerDied(died)) => {
                        c.report(died.dead_thread());
                        died.recover()
                    }
                    Err(other) => panic!("Lock::acquire: {other}"),
                };
                c.enter();
                c.dwell(me, &mut rng);
                c.leave();
                drop(guard);
            }
            Subject::RLock(lock) => {
                let outer = match lock.acquire() {
                    Ok(guard) => guard,
                    Err(AcquireError::OwnerDied(died)) => {
                        c.report(died.dead_thread());
                        died.recover()
                    }
                    Err(other) => panic!("RLock::acquire: {other}"),
                };
                let inner = lock.acquire().expect("the owner takes its RLock again");
                c.enter();
                c.dwell(me, &mut rng);
                c.leave();
                drop(inner);
                drop(outer);
            }
            Subject::Condition(cond) => {
                let mut guard = cond.acquire().expect("Condition::acquire");
                if guard.owner_died() {
                    c.report(0);
                    guard.recover();
                }
                c.enter();
                c.dwell(me, &mut rng);
                match rng() % 4 {
                    0 => {
                        // Wait (the lock is released meanwhile), then count in again.
                        c.leave();
                        guard.wait(Some(Duration::from_millis(1 + rng() % 3)));
                        if guard.owner_died() {
                            c.report(0);
                            guard.recover();
                        }
                        c.enter();
                        c.dwell(me, &mut rng);
                    }
                    1 => guard.notify(1),
                    2 => guard.notify_all(),
                    _ => {}
                }
                c.leave();
                drop(guard);
            }
        }
        if c.get(PARK + me) == PARK_OUTSIDE {
            c.at(PHASE + me).store(PARK_OUTSIDE, Ordering::SeqCst);
            park_forever();
        }
    }
}

/// Starts `p` as a daemon: if the test fails, its children end with it.
fn start(p: Process) -> Process {
    let mut p = p.with_daemon(true);
    p.start().expect("start a child");
    p
}

/// Polls `done` until it holds, panicking with `what` after `secs`.
fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "still waiting after {secs} s: {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// One lock under storm: its contenders and counters.
struct Arena {
    subject: Subject,
    counters: RawArray<u64>,
    contenders: Vec<Process>,
    died_inside: Vec<u32>,
    died_outside: usize,
}

impl Arena {
    fn new(subject: Subject, rng: &mut impl FnMut() -> u64) -> Arena {
        let counters = RawArray::<u64>::new(SIZE).expect("counters");
        let mut arena = Arena { subject, counters, contenders: Vec::new(), died_inside: Vec::new(), died_outside: 0 };
        arena.contenders = (0..CONTENDERS).map(|me| arena.contender(me, rng())).collect();
        arena
    }

    fn counters(&self) -> Counters {
        Counters(self.counters.clone())
    }

    fn contender(&self, me: usize, seed: u64) -> Process {
        let (subject, counters) = (self.subject.clone(), self.counters());
        start(Process::fork(move || contend(subject, counters, me, seed)))
    }

    /// Asks contender `victim` to stop inside (or outside) the critical section, kills it there,
    /// and starts a replacement.
    fn kill(&mut self, victim: usize, mode: u64, seed: u64) {
        let c = self.counters();
        c.at(PARK + victim).store(mode, Ordering::SeqCst);
        wait_until("a contender parks where asked", 20, || c.get(PHASE + victim) == mode);
        let pid = self.contenders[victim].pid().expect("started");
        if mode == PARK_INSIDE {
            // The victim counts as gone from the critical section from here on: a correct lock
            // lets nobody in while it lives, and only a dead owner's lock is taken over.
            c.leave();
        }
        common::sigkill(pid);
        assert_eq!(self.contenders[victim].join().expect("join"), -9);
        if mode == PARK_INSIDE {
            self.died_inside.push(pid as u32);
        } else {
            self.died_outside += 1;
        }
        c.at(PARK + victim).store(0, Ordering::SeqCst);
        c.at(PHASE + victim).store(0, Ordering::SeqCst);
        self.contenders[victim] = self.contender(victim, seed);
    }

    /// Stops the contenders and checks the counts; returns (entries, violations).
    fn finish(mut self, label: &str, names_dead: bool) -> (u64, u64) {
        let c = self.counters();
        // Every death inside gets its report (a takeover takes about one owner-check interval),
        // and the lock still works afterwards.
        let expected = self.died_inside.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.get(REPORTS) < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let target = c.get(ENTRIES) + 20;
        wait_until("the contenders make progress after the storm", 20, || c.get(ENTRIES) >= target);
        c.at(STOP).store(1, Ordering::SeqCst);
        for p in &mut self.contenders {
            assert_eq!(p.join().expect("join"), 0, "a contender failed");
        }
        let (violations, reports, entries) = (c.get(VIOLATIONS), c.get(REPORTS), c.get(ENTRIES));
        let named: Vec<u32> = (0..reports as usize).map(|i| c.get(LOG + i) as u32).collect();
        if violations != 0 || reports != expected {
            eprintln!("  {label}: reports named {named:?}; died inside {:?}", self.died_inside);
        }
        assert_eq!(violations, 0, "{label}: someone was inside together with another");
        assert_eq!(reports, expected, "{label}: OwnerDied reports vs deaths inside");
        if names_dead {
            let (mut named, mut died) = (named, self.died_inside.clone());
            named.sort_unstable();
            died.sort_unstable();
            assert_eq!(named, died, "{label}: the reports name the threads that died inside");
        }
        (entries, violations)
    }
}

/// Storms `LOCKS` locks made by `make` at once, `kills` deaths each; `names_dead` says whether the
/// reports name the dead thread.
fn storm(label: &str, make: impl Fn() -> Subject, names_dead: bool, seed: u64) {
    let kills: usize = std::env::var("LOCK_STRESS_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let began = Instant::now();
    let mut rng = common::xorshift(seed);
    let mut arenas: Vec<Arena> = (0..LOCKS).map(|_| Arena::new(make(), &mut rng)).collect();
    let mut busy: Vec<Process> = (0..BUSY)
        .map(|_| {
            start(Process::fork(|| -> () {
                loop {
                    std::hint::spin_loop();
                }
            }))
        })
        .collect();
    let progress = |arenas: &[Arena]| -> u64 { arenas.iter().map(|a| a.counters().get(ENTRIES)).sum() };
    for _ in 0..kills {
        // Let the locks change hands a few hundred times.
        let target = progress(&arenas) + 50 + rng() % 400;
        wait_until("the contenders make progress", 20, || progress(&arenas) >= target);
        let arena = (rng() % LOCKS as u64) as usize;
        let victim = (rng() % CONTENDERS as u64) as usize;
        let mode = if rng().is_multiple_of(3) { PARK_OUTSIDE } else { PARK_INSIDE };
        arenas[arena].kill(victim, mode, rng());
    }
    let (inside, outside): (usize, usize) =
        arenas.iter().map(|a| (a.died_inside.len(), a.died_outside)).fold((0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
    let (mut entries, mut violations) = (0, 0);
    for arena in arenas {
        let (e, v) = arena.finish(label, names_dead);
        entries += e;
        violations += v;
    }
    for p in &mut busy {
        p.kill().expect("kill a busy loop");
        assert_eq!(p.join().expect("join"), -9);
    }
    println!(
        "  {label} x{LOCKS} ({:.1} s): {entries} entries, {inside} deaths inside, {outside} outside, {inside} OwnerDied, {violations} violations",
        began.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// The barrier: parties waiting back to back, killed while they wait and restarted
// ---------------------------------------------------------------------------------------------

const GENERATIONS: usize = 0;
const BROKEN_WAITS: usize = 1;

/// A party: waits on the barrier again and again; the one with index 0 counts the generations.
fn party(barrier: Barrier, counters: Counters) {
    loop {
        match barrier.wait() {
            Ok(0) => {
                counters.add(GENERATIONS);
            }
            Ok(_) => {}
            Err(_) => {
                counters.add(BROKEN_WAITS);
                return;
            }
        }
    }
}

/// Whether stopped process `pid` is asleep in a futex wait (`/proc/<pid>/syscall`: syscall 202,
/// operation WAIT or WAIT_BITSET): not inside the barrier's internal critical section, which
/// never sleeps.
fn stopped_in_futex_wait(pid: i32) -> bool {
    let Ok(line) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else { return false };
    let mut fields = line.split_whitespace();
    let (Some("202"), Some(_uaddr), Some(op)) = (fields.next(), fields.next(), fields.next()) else { return false };
    let op = u64::from_str_radix(op.trim_start_matches("0x"), 16).unwrap_or(u64::MAX);
    matches!(op & 0x7f, 0 | 9)
}

/// Waits until stopped process `pid` shows as stopped (`T`) in `/proc`.
fn wait_until_stopped(pid: i32) {
    wait_until("a process stops", 10, || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    });
}

/// Four parties wait back to back; `kills` times, one of them is killed and restarted: while it
/// waits (asleep in the barrier, never inside its internal critical section), or with
/// `any_moment` whatever it is doing (inside the barrier's internal state too). The barrier
/// never breaks (it has no action): each dead party's arrival is withdrawn, a release cut short
/// is finished, and the replacement takes the dead party's place.
fn barrier_storm(kills: usize, seed: u64, any_moment: bool) {
    const PARTIES: usize = 4;
    let barrier = Barrier::new(PARTIES as u32).expect("barrier");
    let counters = RawArray::<u64>::new(8).expect("counters");
    let c = Counters(counters.clone());
    let start_party = || {
        let (barrier, counters) = (barrier.clone(), Counters(counters.clone()));
        start(Process::fork(move || party(barrier, counters)))
    };
    let mut parties: Vec<Process> = (0..PARTIES).map(|_| start_party()).collect();
    let mut rng = common::xorshift(seed);
    let mut killed = 0;
    while killed < kills {
        let target = c.get(GENERATIONS) + 2 + rng() % 20;
        wait_until("the parties pass generations", 20, || c.get(GENERATIONS) >= target || c.get(BROKEN_WAITS) > 0);
        assert_eq!(c.get(BROKEN_WAITS), 0, "the barrier broke after {killed} kills");
        let victim = (rng() % PARTIES as u64) as usize;
        let pid = parties[victim].pid().expect("started");
        let pid_ = rustix::process::Pid::from_raw(pid).expect("pid");
        if !any_moment {
            rustix::process::kill_process(pid_, rustix::process::Signal::STOP).expect("SIGSTOP");
            wait_until_stopped(pid);
            if !stopped_in_futex_wait(pid) {
                // Running, or inside the internal critical section: not a waiting party; next time.
                rustix::process::kill_process(pid_, rustix::process::Signal::CONT).expect("SIGCONT");
                continue;
            }
        }
        common::sigkill(pid);
        assert_eq!(parties[victim].join().expect("join"), -9);
        parties[victim] = start_party();
        killed += 1;
    }
    let target = c.get(GENERATIONS) + 20;
    wait_until("the parties pass generations after the storm", 20, || {
        c.get(GENERATIONS) >= target || c.get(BROKEN_WAITS) > 0
    });
    let (generations, broken) = (c.get(GENERATIONS), c.get(BROKEN_WAITS));
    for p in &mut parties {
        p.kill().expect("kill a party");
        let _ = p.join();
    }
    let which = if any_moment { "parties killed at any moment" } else { "waiting parties killed" };
    println!("  Barrier({PARTIES}): {generations} generations, {killed} {which} and restarted, {broken} broken waits");
    assert_eq!(broken, 0, "the barrier broke");
    assert!(!barrier.broken());
}

fn main() {
    let mut harness = common::ForkHarness::from_args();
    harness.run("lock_survives_a_kill_storm_under_load", || {
        storm("Lock", || Subject::Lock(Lock::new().unwrap()), true, 0x5eed_0001);
    });
    harness.run("rlock_survives_a_kill_storm_under_load", || {
        storm("RLock", || Subject::RLock(RLock::new().unwrap()), true, 0x5eed_0002);
    });
    harness.run("condition_over_rlock_survives_a_kill_storm_under_load", || {
        storm("Condition(RLock)", || Subject::Condition(Condition::new().unwrap()), false, 0x5eed_0003);
    });
    harness.run("condition_over_lock_survives_a_kill_storm_under_load", || {
        let make = || Subject::Condition(Condition::with_lock(Lock::new().unwrap()).unwrap());
        storm("Condition(Lock)", make, false, 0x5eed_0004);
    });
    harness.run("barrier_survives_waiting_parties_killed_and_restarted", || barrier_storm(30, 0x5eed_0005, false));
    harness.run("barrier_survives_parties_killed_at_any_moment_and_restarted", || {
        barrier_storm(200, 0x5eed_0006, true);
    });
    harness.finish();
}
