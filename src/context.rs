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
use std::sync::Mutex;

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

/// The number of CPUs this process may use: the smaller of its CPU affinity mask and its cgroup
/// CPU quota (CPython's `cpu_count()` ignores both; `os.process_cpu_count()` honours affinity).
/// Always at least 1.
#[doc(alias = "process_cpu_count")]
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
