//! Start methods and contexts (CPython `get_context`, `set_start_method`, `get_start_method`,
//! `get_all_start_methods`).
//!
//! | method | how a child starts | what it can run |
//! |---|---|---|
//! | [`ForkServer`](StartMethod::ForkServer) (default) | a small single-threaded server, started on first use, forks it | `fn` items and non-capturing closures, [`Run`] objects |
//! | [`Spawn`](StartMethod::Spawn) | fork + exec of the current executable; the child learns its job over an inherited socket | the same |
//! | [`Fork`](StartMethod::Fork) | a plain `fork()` of the calling process | the same, and capturing closures ([`Process::fork`](crate::Process::fork)); refused while the process runs several threads |

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::{Process, Run, Target};

/// How a child process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// A fork server process forks each child (CPython `"forkserver"`, the default on Linux since
    /// 3.14). Fast, and safe in multi-threaded parents.
    #[doc(alias = "forkserver")]
    ForkServer,
    /// Fork and exec of the current executable (CPython `"spawn"`). The slowest, and the most
    /// isolated: the child shares nothing with the parent's memory.
    #[doc(alias = "spawn")]
    Spawn,
    /// A plain fork of the calling process (CPython `"fork"`). The only method that runs capturing
    /// closures; only safe while the parent has one thread.
    #[doc(alias = "fork")]
    Fork,
}

impl StartMethod {
    /// CPython's name for the method: `"forkserver"`, `"spawn"` or `"fork"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::ForkServer => "forkserver",
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StartMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "forkserver" => Ok(StartMethod::ForkServer),
            "spawn" => Ok(StartMethod::Spawn),
            "fork" => Ok(StartMethod::Fork),
            other => Err(Error::UnknownStartMethod(other.to_string())),
        }
    }
}

static DEFAULT_METHOD: Mutex<Option<StartMethod>> = Mutex::new(None);

fn default_slot() -> std::sync::MutexGuard<'static, Option<StartMethod>> {
    DEFAULT_METHOD.lock().unwrap_or_else(|p| p.into_inner())
}

/// The start method of the default context, fixing it to [`StartMethod::ForkServer`] if nothing
/// chose one yet. A child defaults to the method it was started with.
pub fn get_start_method() -> StartMethod {
    *default_slot().get_or_insert(StartMethod::ForkServer)
}

/// The default context's start method if one was chosen, without fixing it (CPython
/// `get_start_method(allow_none=True)`).
pub fn peek_start_method() -> Option<StartMethod> {
    *default_slot()
}

/// Chooses the default start method.
///
/// # Errors
///
/// [`Error::ContextAlreadySet`] if a method was already chosen (explicitly or by starting a
/// process) and `force` is false. With `force`, `None` resets the choice.
pub fn set_start_method(method: Option<StartMethod>, force: bool) -> Result<()> {
    let mut slot = default_slot();
    if slot.is_some() && !force {
        return Err(Error::ContextAlreadySet);
    }
    *slot = method;
    Ok(())
}

/// Sets the default start method in a child to the one that started it.
pub(crate) fn inherit_start_method(method: StartMethod) {
    *default_slot() = Some(method);
}

/// Every start method this platform supports, the default first (CPython 3.14 order on Linux).
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![StartMethod::ForkServer, StartMethod::Fork, StartMethod::Spawn]
}

/// A context bound to one start method: every process (and, in later modules, every primitive) it
/// creates uses that method.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{get_context, StartMethod};
///
/// fn hello(n: u32) { println!("hello {n}"); }
///
/// # fn main() -> multiproc::Result<()> {
/// let ctx = get_context("spawn")?;
/// assert_eq!(ctx.start_method(), StartMethod::Spawn);
/// let mut p = ctx.process(hello, (1,));
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// A context for `method`.
    pub fn new(method: StartMethod) -> Self {
        Context { method }
    }

    /// The start method of this context.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process running `target(args...)` with this context's start method.
    pub fn process<F: Target<Args>, Args: Serialize>(&self, target: F, args: Args) -> Process {
        Process::new(target, args).with_start_method(self.method)
    }

    /// A process running `object.run()` with this context's start method.
    pub fn process_from_run<T: Run>(&self, object: T) -> Process {
        Process::from_run(object).with_start_method(self.method)
    }

    /// A duplex pipe ([`crate::pipe`]; connections work the same under every start method).
    #[doc(alias = "Pipe")]
    pub fn pipe(&self) -> Result<(crate::Connection, crate::Connection)> {
        crate::pipe()
    }

    /// A one-way pipe, `(reader, writer)` ([`crate::simplex_pipe`]).
    #[doc(alias = "Pipe")]
    pub fn simplex_pipe(
        &self,
    ) -> Result<(crate::Connection<crate::connection::ReadOnly>, crate::Connection<crate::connection::WriteOnly>)> {
        crate::simplex_pipe()
    }
}

/// The context of the named start method (`"forkserver"`, `"spawn"`, `"fork"`).
///
/// # Errors
///
/// [`Error::UnknownStartMethod`] for any other name.
pub fn get_context(method: &str) -> Result<Context> {
    Ok(Context::new(method.parse()?))
}

/// The default context, with the default start method (fixing it if unset).
pub fn default_context() -> Context {
    Context::new(get_start_method())
}

/// How long [`cpu_count`] keeps the cgroup's CPU quota before reading it again.
const CPU_QUOTA_KEPT: Duration = Duration::from_secs(1);

/// The number of CPUs this process may use: the smaller of its CPU affinity mask and its cgroup
/// CPU quota (CPython's `cpu_count()` ignores both; `os.process_cpu_count()` honours affinity).
/// Always at least 1.
///
/// The affinity mask is read on every call (one system call); the quota, which takes several
/// files to read (some 50 µs, a tenth of a pool's start), at most once a second: a quota changed
/// while the program runs is seen within a second.
#[doc(alias = "process_cpu_count")]
pub fn cpu_count() -> usize {
    /// The last count, packed: when it was read (milliseconds since `SINCE`, wrapping), the
    /// affinity it was read under, and the count (16 bits each); 0 before the first.
    static LAST: AtomicU64 = AtomicU64::new(0);
    static SINCE: OnceLock<Instant> = OnceLock::new();
    let affinity = crate::sys::cpus_to_run_on();
    let now = SINCE.get_or_init(Instant::now).elapsed().as_millis() as u32;
    let last = LAST.load(Ordering::Relaxed);
    let (read_at, read_under, count) = ((last >> 32) as u32, (last >> 16) as u16, last as u16);
    if last != 0
        && usize::from(read_under) == affinity
        && u128::from(now.wrapping_sub(read_at)) < CPU_QUOTA_KEPT.as_millis()
    {
        return usize::from(count);
    }
    let count = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let (Ok(under), Ok(packed)) = (u16::try_from(affinity), u16::try_from(count)) {
        LAST.store(u64::from(now) << 32 | u64::from(under) << 16 | u64::from(packed), Ordering::Relaxed);
    }
    count
}

#[cfg(test)]
mod tests {
    /// The count is the standard library's (affinity mask and cgroup quota), kept between calls,
    /// and a change of the affinity mask is seen by the next call.
    #[test]
    fn cpu_count_follows_the_affinity_mask_at_once() {
        use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
        let all = std::thread::available_parallelism().unwrap().get();
        assert_eq!(super::cpu_count(), all);
        assert_eq!(super::cpu_count(), all);
        // This thread alone on one CPU (a mask is a thread's own: other tests keep theirs).
        let mask = sched_getaffinity(None).unwrap();
        let first = (0..CpuSet::MAX_CPU).find(|&cpu| mask.is_set(cpu)).unwrap();
        let mut one = CpuSet::new();
        one.set(first);
        sched_setaffinity(None, &one).unwrap();
        let pinned = super::cpu_count();
        sched_setaffinity(None, &mask).unwrap();
        assert_eq!(pinned, 1);
        assert_eq!(super::cpu_count(), all);
    }
}
