//! The chaos suite: bounded kill storms against the pool, the queues, every lock kind and the
//! barrier, counting what the README promises never happens: tasks or items lost or duplicated,
//! mutual-exclusion violations, hangs.
//!
//! ```text
//! cargo test --release --test chaos                     # the time-boxed form (about 2 minutes)
//! MULTIPROC_CHAOS_SECONDS=1800 cargo test --release --test chaos  # longer: the seconds for all phases
//! MULTIPROC_CHAOS_SEED=42 cargo test --release --test chaos       # another seeded storm (the seed is printed)
//! ```
//!
//! Every random choice (which process, when, where) comes from one seeded xorshift generator, so a
//! failing storm can be replayed with its seed (timing still varies). Each phase runs for its share
//! of the time under a watchdog: a phase that stops making progress counts a hang, its processes are
//! killed, and the next phase runs; `alarm(2)` ends the whole run if even that fails. The run
//! prints a table (runs, kills, lost, duplicated, violations, hangs per phase) and fails if any
//! count but runs and kills is not zero. Not part of the plain `cargo test` run (`test = false` in
//! Cargo.toml); `.ci/run` runs the time-boxed form.
//!
//! What each phase asserts:
//!
//! - **pool**: tasks run in 4 workers, random running tasks' workers are killed. Every task ends
//!   (its result, or `WorkerDied`); none runs twice; none is lost.
//! - **queue**: 2 producers and 2 consumers, killed at random and restarted. No item acknowledged by
//!   a producer is lost beyond one in flight per consumer killed; none arrives twice.
//! - **Lock, RLock, Condition**: contenders killed at random moments (inside the critical section,
//!   outside, in the middle of acquiring or releasing). Nobody is inside with a live other holder;
//!   `OwnerDied` reports never outnumber deaths; the lock keeps changing hands.
//! - **Semaphore, BoundedSemaphore** (value 2): contenders killed while they hold a unit (the test
//!   gives the unit back, as a semaphore does not know its holders, like CPython's) or while they
//!   do not. Never more than 2 inside.
//! - **Event**: waiters killed at random while a setter sets and clears: every live waiter sees
//!   each set.
//! - **Barrier** (no action): 4 parties back to back; parties killed while they wait, and parties
//!   killed at any moment (inside its internal state too). It never breaks (a break counts as a
//!   violation, and the test resets it), and keeps releasing generations.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::sync::AcquireError;
use multiproc::{
    Barrier, BoundedSemaphore, Condition, Error, Event, Lock, Pool, Process, Queue, RLock, RawArray, Semaphore,
};

// ---------------------------------------------------------------------------------------------
// The run: phases, budgets, the table
// ---------------------------------------------------------------------------------------------

/// What a phase counts.
#[derive(Debug, Default, Clone)]
struct Tally {
    runs: u64,
    kills: u64,
    lost: u64,
    duplicated: u64,
    violations: u64,
    hangs: u64,
    note: String,
}

impl Tally {
    fn failed(&self) -> bool {
        self.lost + self.duplicated + self.violations + self.hangs > 0
    }
}

/// The xorshift generator of the run.
type Rng = Box<dyn FnMut() -> u64>;

fn below(rng: &mut Rng, n: u64) -> u64 {
    rng() % n
}

/// Starts `p` as a daemon (it ends with the test process, whatever happens).
fn start(p: Process) -> Process {
    let mut p = p.with_daemon(true);
    p.start().expect("start a child");
    p
}

/// Kills `p` (if it still runs) and reaps it.
fn kill_and_reap(p: &mut Process) {
    let _ = p.kill();
    let _ = p.join();
}

fn pid(p: &Process) -> i32 {
    p.pid().expect("started")
}

/// The start time of process `pid` (clock ticks since boot), if it exists and is not a zombie.
fn started_at(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if fields.next()?.starts_with(['Z', 'X']) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether process `pid` is alive. Identities are `pid | start << 32`: with the start time, a pid
/// that a later process reuses is not mistaken for the process that had it.
fn alive(identity: u64) -> bool {
    let (pid, start) = (identity & 0xffff_ffff, identity >> 32);
    started_at(pid).is_some_and(|now| now & 0xffff_ffff == start)
}

/// This process's identity (see [`alive`]).
fn me_identity() -> u64 {
    let pid = u64::from(std::process::id());
    pid | (started_at(pid).unwrap_or(0) & 0xffff_ffff) << 32
}

/// Shared counters, as atomics.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Counters(RawArray<u64>);

impl Counters {
    fn new(len: usize) -> Counters {
        Counters(RawArray::new(len).expect("counters"))
    }

    fn at(&self, i: usize) -> &AtomicU64 {
        &self.0.cells()[i]
    }

    fn get(&self, i: usize) -> u64 {
        self.at(i).load(Ordering::SeqCst)
    }

    fn set(&self, i: usize, v: u64) {
        self.at(i).store(v, Ordering::SeqCst);
    }

    fn add(&self, i: usize) -> u64 {
        self.at(i).fetch_add(1, Ordering::SeqCst)
    }
}

/// Waits until `done`, at most `secs`; false (a hang) if it never came.
fn within(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    true
}

/// How long a phase may go without progress before it counts as a hang.
const HANG_SECS: u64 = 20;

fn main() {
    let seconds: u64 = std::env::var("MULTIPROC_CHAOS_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(110);
    let seed: u64 = std::env::var("MULTIPROC_CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x00c4_a05e);
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    println!("chaos: seed {seed}, {seconds} s in all");
    let mut rng: Rng = Box::new(common::xorshift(seed.max(1)));
    type PhaseFn = fn(Duration, &mut Rng) -> Tally;
    let phases: [(&str, u64, PhaseFn); 10] = [
        ("pool", 16, pool_phase),
        ("queue", 14, queue_phase),
        ("Lock", 10, |d, r| lock_phase(d, r, LockKind::Lock)),
        ("RLock", 10, |d, r| lock_phase(d, r, LockKind::RLock)),
        ("Condition", 10, |d, r| lock_phase(d, r, LockKind::Condition)),
        ("Semaphore", 8, |d, r| semaphore_phase(d, r, false)),
        ("BoundedSemaphore", 8, |d, r| semaphore_phase(d, r, true)),
        ("Event", 8, event_phase),
        ("Barrier", 16, barrier_phase),
        ("Barrier (any moment)", 10, barrier_any_moment_phase),
    ];
    let total_weight: u64 = phases.iter().map(|p| p.1).sum();
    let mut rows = Vec::new();
    for (name, weight, phase) in phases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let budget = Duration::from_secs(seconds) * weight as u32 / total_weight as u32;
        // SAFETY: alarm only schedules SIGALRM, whose default action ends the process: the last
        // resort if a phase's own watchdogs fail.
        unsafe { libc::alarm((budget.as_secs() + 4 * HANG_SECS) as u32) };
        let began = Instant::now();
        let tally = phase(budget, &mut rng);
        // SAFETY: as above; 0 cancels the alarm.
        unsafe { libc::alarm(0) };
        println!("  {name}: {:.1} s, {tally:?}", began.elapsed().as_secs_f64());
        rows.push((name, tally));
    }
    println!("\n| phase | runs | kills | lost | duplicated | violations | hangs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut failed = false;
    for (name, t) in &rows {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            t.runs, t.kills, t.lost, t.duplicated, t.violations, t.hangs
        );
        failed |= t.failed();
    }
    let kills: u64 = rows.iter().map(|r| r.1.kills).sum();
    println!("\nchaos: seed {seed}: {} phases, {kills} kills", rows.len());
    if failed {
        eprintln!("chaos: FAILED (replay with MULTIPROC_CHAOS_SEED={seed})");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Pool
// ---------------------------------------------------------------------------------------------

// Task state: `STARTS + i` counts runs of task i, `FINISHES + i` the runs that returned; `PIDS + i`
// holds its worker while it runs.
const TASKS: usize = 240;
const STARTS: usize = 0;
const PIDS: usize = TASKS;
const FINISHES: usize = 2 * TASKS;

/// A task: notes that it runs (and where), works a little, returns its number.
fn chaos_task(i: u64, counters: Counters, spins: u64) -> u64 {
    let i = i as usize;
    counters.add(STARTS + i);
    counters.set(PIDS + i, me_identity());
    let began = Instant::now();
    while began.elapsed() < Duration::from_micros(spins) {
        std::hint::spin_loop();
    }
    counters.set(PIDS + i, 0);
    counters.add(FINISHES + i);
    i as u64
}

fn pool_phase(budget: Duration, rng: &mut Rng) -> Tally {
    let mut t = Tally::default();
    let mut reruns = 0u64;
    let pool = Pool::new(4).expect("pool");
    let end = Instant::now() + budget;
    while Instant::now() < end {
        let counters = Counters::new(3 * TASKS);
        let results: Vec<_> = (0..TASKS as u64)
            .map(|i| pool.apply_async(chaos_task, (i, counters.clone(), 200 + below(rng, 3000))).expect("submit"))
            .collect();
        // Kill a few running tasks' workers while the round runs.
        let kills = 1 + below(rng, 4);
        for _ in 0..kills {
            let target = below(rng, TASKS as u64) as usize;
            if !within(HANG_SECS, || counters.get(PIDS + target) != 0 || counters.get(STARTS + target) > 0) {
                break;
            }
            let victim = counters.get(PIDS + target);
            if victim != 0 && alive(victim) {
                common::sigkill((victim & 0xffff_ffff) as i32);
                t.kills += 1;
            }
        }
        let (mut ok, mut died) = (0, 0);
        for (i, result) in results.into_iter().enumerate() {
            match result.get_timeout(Duration::from_secs(HANG_SECS)) {
                Ok(n) if n == i as u64 => ok += 1,
                Ok(n) => {
                    t.violations += 1;
                    t.note = format!("task {i} returned {n}");
                }
                Err(Error::WorkerDied { .. }) => died += 1,
                Err(Error::Timeout(_)) => t.lost += 1,
                Err(e) => {
                    t.violations += 1;
                    t.note = format!("task {i}: {e}");
                }
            }
            // The pool's promise (src/pool/mod.rs): a task whose worker dies while it runs fails
            // and never runs again (no retries here); a task that had *finished* when its worker
            // died, its outcome not yet reported, runs again. So every run but the last must
            // have finished: a run cut short and then run again is a duplicate.
            let (starts, finishes) = (counters.get(STARTS + i), counters.get(FINISHES + i));
            if starts >= 2 {
                reruns += 1;
                if finishes + 1 < starts {
                    t.duplicated += 1;
                    t.note = format!("task {i} ran {starts} times, {finishes} of them to the end");
                }
            }
        }
        t.runs += ok + died;
        if t.lost > 0 {
            t.hangs += 1;
            break;
        }
    }
    pool.terminate();
    let _ = pool.join();
    if t.note.is_empty() {
        t.note = format!("{reruns} finished tasks ran again (killed before their outcome was sent)");
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------

/// Items carry `producer << 20 | sequence`.
const SEQ_BITS: u32 = 20;
/// Producer ids for the whole phase (a round starts up to three): with 64 of 4 096 items each,
/// a queue moving some two million items a second ran out of ids in half a second and 50 kills,
/// far short of the phase's budget; these last about four seconds and 1 200 kills.
const MAX_PRODUCERS: usize = 2048;
/// Counters: `ACKED + p` is how many items producer p put (acknowledged); `SEEN` onward, a count
/// per possible item.
const ACKED: usize = 0;
const SEEN: usize = MAX_PRODUCERS;
const ITEMS_PER_PRODUCER: usize = 1024;
const STOP_PRODUCING: usize = SEEN + MAX_PRODUCERS * ITEMS_PER_PRODUCER;
const TOTAL_SEEN: usize = STOP_PRODUCING + 1;
const QUEUE_COUNTERS: usize = TOTAL_SEEN + 1;

fn producer(queue: Queue<u64>, counters: Counters, me: u64) {
    for seq in 0..ITEMS_PER_PRODUCER as u64 {
        if counters.get(STOP_PRODUCING) != 0 {
            return;
        }
        if queue.put(me << SEQ_BITS | seq).is_err() {
            return;
        }
        counters.set(ACKED + me as usize, seq + 1);
    }
}

/// Tells a consumer to stop.
const SENTINEL: u64 = u64::MAX;

fn consumer(queue: Queue<u64>, counters: Counters) {
    while let Ok(item) = queue.get() {
        if item == SENTINEL {
            return;
        }
        let (p, seq) = ((item >> SEQ_BITS) as usize, (item & ((1 << SEQ_BITS) - 1)) as usize);
        counters.add(SEEN + p * ITEMS_PER_PRODUCER + seq);
        counters.add(TOTAL_SEEN);
    }
}

fn queue_phase(budget: Duration, rng: &mut Rng) -> Tally {
    let mut t = Tally::default();
    let queue: Queue<u64> = Queue::with_maxsize(64).expect("queue");
    let counters = Counters::new(QUEUE_COUNTERS);
    let mut next_producer = 0u64;
    let new_producer = |next: &mut u64| {
        let me = *next;
        *next += 1;
        start(Process::new(producer, (queue.clone(), counters.clone(), me)))
    };
    let mut producers: Vec<Process> = (0..2).map(|_| new_producer(&mut next_producer)).collect();
    let mut consumers: Vec<Process> =
        (0..2).map(|_| start(Process::new(consumer, (queue.clone(), counters.clone())))).collect();
    let mut consumer_kills = 0;
    let end = Instant::now() + budget;
    // A round starts at most three producers (one for a killed one, two for ones that ended):
    // stop while every id still fits the counters.
    while Instant::now() < end && next_producer as usize + 3 <= MAX_PRODUCERS {
        let target = counters.get(TOTAL_SEEN) + 50 + below(rng, 500);
        let finished = |p: &Vec<Process>| p.iter().all(|p| !p.is_alive());
        if !within(HANG_SECS, || counters.get(TOTAL_SEEN) >= target || finished(&producers)) {
            t.hangs += 1;
            break;
        }
        if below(rng, 2) == 0 {
            let k = below(rng, 2) as usize;
            kill_and_reap(&mut producers[k]);
            producers[k] = new_producer(&mut next_producer);
        } else {
            let k = below(rng, 2) as usize;
            kill_and_reap(&mut consumers[k]);
            consumer_kills += 1;
            consumers[k] = start(Process::new(consumer, (queue.clone(), counters.clone())));
        }
        t.kills += 1;
        for p in &mut producers {
            if !p.is_alive() {
                let _ = p.join();
                *p = new_producer(&mut next_producer);
            }
        }
    }
    // Stop producing, let the consumers drain the queue, then count.
    counters.set(STOP_PRODUCING, 1);
    for p in &mut producers {
        if !within(HANG_SECS, || !p.is_alive()) {
            t.hangs += 1;
        }
        kill_and_reap(p);
    }
    // Then each consumer takes what is left and a sentinel, and ends: all it took is counted.
    for _ in &consumers {
        queue.put(SENTINEL).expect("put a sentinel");
    }
    for c in &mut consumers {
        if !within(HANG_SECS, || !c.is_alive()) {
            t.hangs += 1;
        }
        kill_and_reap(c);
    }
    let mut lost = 0u64;
    for p in 0..next_producer as usize {
        let acked = counters.get(ACKED + p) as usize;
        for seq in 0..ITEMS_PER_PRODUCER {
            let seen = counters.get(SEEN + p * ITEMS_PER_PRODUCER + seq);
            t.runs += seen.min(1);
            if seen > 1 {
                t.duplicated += 1;
            }
            if seq < acked && seen == 0 {
                lost += 1;
            }
        }
    }
    // A consumer killed between taking an item and counting it loses that one item, by design.
    t.lost = lost.saturating_sub(consumer_kills);
    t.note = format!("{lost} unseen, {consumer_kills} consumers killed (one item each may be in flight)");
    t
}

// ---------------------------------------------------------------------------------------------
// Locks: contenders killed at random moments
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
enum LockKind {
    Lock,
    RLock,
    Condition,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum AnyLock {
    Lock(Lock),
    RLock(RLock),
    Condition(Condition),
}

const CONTENDERS: usize = 5;
// Lock counters: a holder slot per contender (its pid while inside), entries, reports, stop.
const HOLDER: usize = 0;
const ENTRIES: usize = CONTENDERS;
const REPORTS: usize = ENTRIES + 1;
const VIOLATIONS: usize = REPORTS + 1;
const STOP: usize = VIOLATIONS + 1;
const LOCK_COUNTERS: usize = STOP + 1;

/// Inside: marks this contender's slot and counts a violation if another live process holds one.
fn enter(c: &Counters, me: usize, allowed: u64) {
    c.set(HOLDER + me, me_identity());
    let others = (0..CONTENDERS).filter(|&k| k != me).filter(|&k| {
        let holder = c.get(HOLDER + k);
        holder != 0 && alive(holder)
    });
    if others.count() as u64 >= allowed {
        c.add(VIOLATIONS);
    }
    c.add(ENTRIES);
}

fn leave(c: &Counters, me: usize) {
    c.set(HOLDER + me, 0);
}

fn lock_contender(lock: AnyLock, c: Counters, me: usize) {
    let stay = || {
        for _ in 0..(u64::from(std::process::id()) % 7) * 50 {
            std::hint::spin_loop();
        }
    };
    while c.get(STOP) == 0 {
        match &lock {
            AnyLock::Lock(l) => {
                let guard = match l.acquire() {
                    Ok(g) => g,
                    Err(AcquireError::OwnerDied(d)) => {
                        c.add(REPORTS);
                        d.recover()
                    }
                    Err(e) => panic!("{e}"),
                };
                enter(&c, me, 1);
                stay();
                leave(&c, me);
                drop(guard);
            }
            AnyLock::RLock(l) => {
                let outer = match l.acquire() {
                    Ok(g) => g,
                    Err(AcquireError::OwnerDied(d)) => {
                        c.add(REPORTS);
                        d.recover()
                    }
                    Err(e) => panic!("{e}"),
                };
                let inner = l.acquire().expect("recursive");
                enter(&c, me, 1);
                stay();
                leave(&c, me);
                drop(inner);
                drop(outer);
            }
            AnyLock::Condition(cond) => {
                let mut g = cond.acquire().expect("condition");
                if g.owner_died() {
                    c.add(REPORTS);
                    g.recover();
                }
                enter(&c, me, 1);
                stay();
                leave(&c, me);
                if me.is_multiple_of(2) {
                    g.wait(Some(Duration::from_millis(1)));
                    if g.owner_died() {
                        c.add(REPORTS);
                        g.recover();
                    }
                } else {
                    g.notify_all();
                }
                drop(g);
            }
        }
    }
}

fn lock_phase(budget: Duration, rng: &mut Rng, kind: LockKind) -> Tally {
    let mut t = Tally::default();
    let lock = match kind {
        LockKind::Lock => AnyLock::Lock(Lock::new().unwrap()),
        LockKind::RLock => AnyLock::RLock(RLock::new().unwrap()),
        LockKind::Condition => AnyLock::Condition(Condition::new().unwrap()),
    };
    let c = Counters::new(LOCK_COUNTERS);
    let spawn = |me: usize| start(Process::new(lock_contender, (lock.clone(), c.clone(), me)));
    let mut contenders: Vec<Process> = (0..CONTENDERS).map(spawn).collect();
    let end = Instant::now() + budget;
    while Instant::now() < end {
        let target = c.get(ENTRIES) + 20 + below(rng, 2000);
        if !within(HANG_SECS, || c.get(ENTRIES) >= target) {
            t.hangs += 1;
            break;
        }
        let k = below(rng, CONTENDERS as u64) as usize;
        kill_and_reap(&mut contenders[k]);
        t.kills += 1;
        contenders[k] = spawn(k);
    }
    let target = c.get(ENTRIES) + 10;
    if !within(HANG_SECS, || c.get(ENTRIES) >= target) {
        t.hangs += 1;
    }
    c.set(STOP, 1);
    for p in &mut contenders {
        if !within(HANG_SECS, || !p.is_alive()) {
            t.hangs += 1;
        }
        kill_and_reap(p);
    }
    t.runs = c.get(ENTRIES);
    t.violations = c.get(VIOLATIONS);
    let reports = c.get(REPORTS);
    if reports > t.kills {
        t.violations += reports - t.kills;
    }
    t.note = format!("{reports} OwnerDied for {} kills", t.kills);
    t
}

// ---------------------------------------------------------------------------------------------
// Semaphores: contenders killed holding a unit or not
// ---------------------------------------------------------------------------------------------

#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum AnySemaphore {
    Plain(Semaphore),
    Bounded(BoundedSemaphore),
}

const UNITS: u64 = 2;
// Semaphore counters reuse the lock layout, plus a park request and a phase per contender.
const PARK: usize = LOCK_COUNTERS;
const PHASE: usize = PARK + CONTENDERS;
/// How many hold a unit: one atomic count (holder slots read one by one would see a unit that
/// changed hands between two reads as two holders).
const HOLDING: usize = PHASE + CONTENDERS;
const SEMAPHORE_COUNTERS: usize = HOLDING + 1;
const PARK_INSIDE: u64 = 1;
const PARK_OUTSIDE: u64 = 2;

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn semaphore_contender(sem: AnySemaphore, c: Counters, me: usize) {
    while c.get(STOP) == 0 {
        let held = |c: &Counters| {
            if c.add(HOLDING) >= UNITS {
                c.add(VIOLATIONS);
            }
            c.add(ENTRIES);
            if c.get(PARK + me) == PARK_INSIDE {
                c.set(PHASE + me, PARK_INSIDE);
                park_forever();
            }
            c.at(HOLDING).fetch_sub(1, Ordering::SeqCst);
        };
        match &sem {
            AnySemaphore::Plain(s) => {
                let unit = s.acquire();
                held(&c);
                drop(unit);
            }
            AnySemaphore::Bounded(s) => {
                let unit = s.acquire();
                held(&c);
                drop(unit);
            }
        }
        if c.get(PARK + me) == PARK_OUTSIDE {
            c.set(PHASE + me, PARK_OUTSIDE);
            park_forever();
        }
    }
}

fn semaphore_phase(budget: Duration, rng: &mut Rng, bounded: bool) -> Tally {
    let mut t = Tally::default();
    let sem = match bounded {
        false => AnySemaphore::Plain(Semaphore::new(UNITS as u32).unwrap()),
        true => AnySemaphore::Bounded(BoundedSemaphore::new(UNITS as u32).unwrap()),
    };
    let c = Counters::new(SEMAPHORE_COUNTERS);
    let spawn = |me: usize| start(Process::new(semaphore_contender, (sem.clone(), c.clone(), me)));
    let mut contenders: Vec<Process> = (0..CONTENDERS).map(spawn).collect();
    let end = Instant::now() + budget;
    while Instant::now() < end {
        let target = c.get(ENTRIES) + 20 + below(rng, 500);
        if !within(HANG_SECS, || c.get(ENTRIES) >= target) {
            t.hangs += 1;
            break;
        }
        let k = below(rng, CONTENDERS as u64) as usize;
        let mode = if below(rng, 2) == 0 { PARK_INSIDE } else { PARK_OUTSIDE };
        c.set(PARK + k, mode);
        if !within(HANG_SECS, || c.get(PHASE + k) == mode) {
            t.hangs += 1;
            break;
        }
        if mode == PARK_INSIDE {
            // The victim holds its unit until the test gives it back below.
            c.at(HOLDING).fetch_sub(1, Ordering::SeqCst);
        }
        kill_and_reap(&mut contenders[k]);
        t.kills += 1;
        if mode == PARK_INSIDE {
            // A semaphore does not know who holds its units (as in CPython): give it back.
            match &sem {
                AnySemaphore::Plain(s) => s.release(),
                AnySemaphore::Bounded(s) => s.release().expect("a unit was held"),
            }
        }
        c.set(PARK + k, 0);
        c.set(PHASE + k, 0);
        contenders[k] = spawn(k);
    }
    c.set(STOP, 1);
    for p in &mut contenders {
        if !within(HANG_SECS, || !p.is_alive()) {
            t.hangs += 1;
        }
        kill_and_reap(p);
    }
    t.runs = c.get(ENTRIES);
    t.violations = c.get(VIOLATIONS);
    t
}

// ---------------------------------------------------------------------------------------------
// Event: waiters killed at random
// ---------------------------------------------------------------------------------------------

// Event counters: per waiter, the last round it saw set; the round the setter is in.
const ROUND: usize = 0;
const SAW: usize = 1;
const EVENT_COUNTERS: usize = SAW + CONTENDERS;

fn event_waiter(set: Event, c: Counters, me: usize) {
    loop {
        set.wait();
        c.set(SAW + me, c.get(ROUND));
        // Wait for the next round before looking again.
        let seen = c.get(ROUND);
        while c.get(ROUND) == seen {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn event_phase(budget: Duration, rng: &mut Rng) -> Tally {
    let mut t = Tally::default();
    let event = Event::new().unwrap();
    let c = Counters::new(EVENT_COUNTERS);
    let spawn = |me: usize| start(Process::new(event_waiter, (event.clone(), c.clone(), me)));
    let mut waiters: Vec<Process> = (0..CONTENDERS).map(spawn).collect();
    let end = Instant::now() + budget;
    let mut round = 0;
    while Instant::now() < end {
        round += 1;
        event.clear();
        c.set(ROUND, round);
        if below(rng, 3) == 0 {
            let k = below(rng, CONTENDERS as u64) as usize;
            kill_and_reap(&mut waiters[k]);
            t.kills += 1;
            waiters[k] = spawn(k);
        }
        event.set();
        // Every waiter alive now sees this round's set.
        if !within(HANG_SECS, || (0..CONTENDERS).all(|k| c.get(SAW + k) == round)) {
            t.hangs += 1;
            break;
        }
        t.runs += 1;
    }
    for p in &mut waiters {
        kill_and_reap(p);
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Barrier
// ---------------------------------------------------------------------------------------------

const PARTIES: usize = 4;
const GENERATIONS: usize = 0;
const BROKEN_WAITS: usize = 1;

fn barrier_party(barrier: Barrier, c: Counters) {
    loop {
        match barrier.wait() {
            Ok(0) => {
                c.add(GENERATIONS);
            }
            Ok(_) => {}
            Err(_) => {
                c.add(BROKEN_WAITS);
                // Wait for the test to reset the barrier, then go on.
                while barrier.broken() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// Whether stopped process `pid` sleeps in a futex wait (`/proc/<pid>/syscall`): then it is not
/// inside the barrier's internal critical section, which never sleeps.
fn stopped_in_futex_wait(pid: i32) -> bool {
    let Ok(line) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else { return false };
    let mut fields = line.split_whitespace();
    let (Some("202"), Some(_), Some(op)) = (fields.next(), fields.next(), fields.next()) else { return false };
    matches!(u64::from_str_radix(op.trim_start_matches("0x"), 16).map(|op| op & 0x7f), Ok(0 | 9))
}

fn signal(pid: i32, signal: rustix::process::Signal) {
    let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid).expect("pid"), signal);
}

fn stopped(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
}

/// `any_moment`: kill whatever the party is doing; otherwise only parties asleep in the barrier.
/// Either way the barrier must never break.
fn barrier_storm(budget: Duration, rng: &mut Rng, any_moment: bool) -> Tally {
    let mut t = Tally::default();
    let barrier = Barrier::new(PARTIES as u32).unwrap();
    let c = Counters::new(4);
    let spawn = || start(Process::new(barrier_party, (barrier.clone(), c.clone())));
    let mut parties: Vec<Process> = (0..PARTIES).map(|_| spawn()).collect();
    let end = Instant::now() + budget;
    let mut resets = 0;
    while Instant::now() < end {
        let target = c.get(GENERATIONS) + 1 + below(rng, 30);
        if !within(HANG_SECS, || c.get(GENERATIONS) >= target || barrier.broken()) {
            t.hangs += 1;
            break;
        }
        if barrier.broken() {
            // It has no action: no death may break it (see `Barrier`'s docs).
            t.violations += 1;
            resets += 1;
            barrier.reset();
            continue;
        }
        let k = below(rng, PARTIES as u64) as usize;
        let victim = pid(&parties[k]);
        if !any_moment {
            signal(victim, rustix::process::Signal::STOP);
            if !within(HANG_SECS, || stopped(victim)) {
                t.hangs += 1;
                break;
            }
            if !stopped_in_futex_wait(victim) {
                signal(victim, rustix::process::Signal::CONT);
                continue;
            }
        }
        kill_and_reap(&mut parties[k]);
        t.kills += 1;
        parties[k] = spawn();
    }
    t.runs = c.get(GENERATIONS);
    t.note = format!("{resets} resets, {} broken waits", c.get(BROKEN_WAITS));
    for p in &mut parties {
        kill_and_reap(p);
    }
    t
}

fn barrier_phase(budget: Duration, rng: &mut Rng) -> Tally {
    barrier_storm(budget, rng, false)
}

fn barrier_any_moment_phase(budget: Duration, rng: &mut Rng) -> Tally {
    barrier_storm(budget, rng, true)
}
