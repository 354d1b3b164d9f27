//! Processes: [`Process`] and the functions that describe the process tree.
//!
//! A `Process` runs a target in a child process: a `fn` item or a non-capturing closure with serde
//! arguments ([`Process::new`]), a [`Run`] object ([`Process::from_run`]), or, with the fork start
//! method only, any closure ([`Process::fork`]).
//!
//! Like CPython's, a `Process` is first configured, then started, then joined; unlike CPython's, its
//! errors are `Result`s, and it can be waited on with a timeout and watched through a
//! [`sentinel`](Process::sentinel) together with other descriptors ([`wait`](crate::wait)).
//!
//! Guarantees:
//! * handles are safe against pid reuse: signals go through a pidfd;
//! * no zombie is left once a child has been joined, or dropped after it ended; a child dropped
//!   while still running is reaped at the next `start`, `active_children()` or exit;
//! * no descriptor of the parent leaks into a spawned or fork-server child: it gets only its launch
//!   socket and the descriptors in its arguments;
//! * daemon children die with their parent, also when the parent is killed with `SIGKILL`;
//! * non-daemon children are joined when the parent's `main` returns (or it calls
//!   `std::process::exit`), daemon children are terminated then, as in CPython;
//! * a child ends when its target returns, as a Rust program ends when `main` returns: threads the
//!   target started are not waited for (CPython waits for non-daemon threads); join their handles
//!   in the target;
//! * a child whose parent had closed standard streams finds `/dev/null` there (spawn and fork
//!   server), so none of its own descriptors takes the numbers 0-2.

// Every public function that returns a `Result` says when it fails (issue 15.9).
#![deny(clippy::missing_errors_doc)]

#[allow(unsafe_code, reason = "a spawned child takes its inherited descriptor and entry point")]
pub(crate) mod bootstrap;
pub(crate) mod children;
#[allow(unsafe_code, reason = "the fork server forks")]
pub(crate) mod forkserver;
pub(crate) mod function;
pub(crate) mod identity;
pub(crate) mod launch;
pub(crate) mod liveness;
pub(crate) mod start;
#[allow(unsafe_code, reason = "entry points travel as offsets from an anchor function")]
pub(crate) mod target;

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use self::children::ChildRecord;
pub use self::function::{Function, IntoFunction};
use self::start::fork::ForkBody;
use self::target::Job;
pub use self::target::{ExitReport, Run, Target};
use crate::context::{self, StartMethod};
use crate::error::{Error, Result};
use crate::sys;

/// What the child will run, until it is started.
enum Body {
    Job(Result<Job>),
    Closure(Box<dyn FnOnce() -> i32 + Send>),
}

enum State {
    Initial(Body),
    Started(Arc<ChildRecord>),
    Closed,
}

/// A child process (CPython `multiprocessing.Process`).
///
/// # Examples
///
/// ```
/// use multiproc::Process;
///
/// fn greet(name: String, times: u32) {
///     for _ in 0..times {
///         println!("hello, {name}");
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::new(greet, ("world".to_string(), 2)).with_name("greeter");
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok(())
/// # }
/// ```
///
/// A capturing closure does not compile with `Process::new`: only the fork method can run it.
///
/// ```compile_fail
/// let text = String::from("captured");
/// let p = multiproc::Process::new(move || println!("{text}"), ());
/// ```
pub struct Process {
    name: String,
    /// The default name's prefix (CPython: the class's name, `Process`, a `Run` type's name, or
    /// `ForkServerPoolWorker` for a pool's worker).
    name_prefix: &'static str,
    daemon: bool,
    method: Option<StartMethod>,
    creator: u32,
    state: State,
}

impl Process {
    /// A process that will run `target` with `args` (a tuple: `()`, `(a,)`, `(a, b)`, ...).
    ///
    /// The arguments are encoded now; an encoding error is reported by [`start`](Self::start).
    #[doc(alias = "target")]
    #[doc(alias = "args")]
    pub fn new<F: Target<Args>, Args: Serialize>(target: F, args: Args) -> Self {
        Self::with_body(Body::Job(Job::from_fn(target, &args)))
    }

    /// A process that will run `object.run()` (CPython: a `Process` subclass overriding `run`).
    /// Its default name is the type's, as CPython names a subclass's instances: `Greeter-1`.
    pub fn from_run<T: Run>(object: T) -> Self {
        let mut process = Self::with_body(Body::Job(Job::from_run(&object)));
        process.name_prefix = target::short_type_name::<T>();
        process
    }

    /// A process that will run any closure, captured state included, in a forked child. Its start
    /// method is [`StartMethod::Fork`], and [`start`](Self::start) refuses it while this process
    /// runs several threads.
    pub fn fork<F, R>(body: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: ExitReport,
    {
        Self::with_body(Body::Closure(Box::new(move || body().exit_code()))).with_start_method(StartMethod::Fork)
    }

    fn with_body(body: Body) -> Self {
        let me = identity::me();
        Process {
            name: String::new(),
            name_prefix: "Process",
            daemon: me.daemon,
            method: None,
            creator: std::process::id(),
            state: State::Initial(body),
        }
    }

    /// Sets the name (default: `Process-N`, or `Process-N:M` in a child; `Greeter-N` for a
    /// [`Run`] type `Greeter`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the default name's prefix: the process is named `{prefix}-N` unless named otherwise.
    pub(crate) fn with_name_prefix(mut self, prefix: &'static str) -> Self {
        self.name_prefix = prefix;
        self
    }

    /// Sets the daemon flag (default: the creating process's flag).
    pub fn with_daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Sets the start method (default: the default context's, see
    /// [`get_start_method`](crate::get_start_method)).
    pub fn with_start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Renames the process; allowed at any time, as in CPython.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Sets the daemon flag.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] once the process has started.
    pub fn set_daemon(&mut self, daemon: bool) -> Result<()> {
        if !matches!(self.state, State::Initial(_)) {
            return Err(Error::InvalidState("process has already started".into()));
        }
        self.daemon = daemon;
        Ok(())
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process is (or will be) a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The start method it uses or will use.
    pub fn start_method(&self) -> StartMethod {
        self.method.unwrap_or_else(context::get_start_method)
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidState`]: started twice, closed, or created by another process;
    /// * [`Error::DaemonCannotHaveChildren`]: this process is a daemon;
    /// * [`Error::ForkWithThreads`]: fork method while this process runs several threads;
    /// * [`Error::Codec`]: the arguments could not be encoded;
    /// * [`Error::StartupHookMissing`], [`Error::BinaryMismatch`], [`Error::ForkServer`],
    ///   [`Error::Io`]: the child could not be launched.
    #[allow(unsafe_code, reason = "calls start_unchecked after checking its contract")]
    pub fn start(&mut self) -> Result<()> {
        if self.start_method() == StartMethod::Fork {
            start::fork::check_single_threaded()?;
        }
        // SAFETY: for the fork method, the check above found a single thread.
        unsafe { self.start_unchecked() }
    }

    /// Starts the child without checking that the fork method is safe.
    ///
    /// # Safety
    ///
    /// With the fork start method, no other thread of this process may hold a lock that the child
    /// will need (the allocator's, stdio's, or one of your own): the child has only the calling
    /// thread, and a lock held by another thread stays held forever. Other start methods are always
    /// safe.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), except [`Error::ForkWithThreads`], which this does not check.
    #[allow(unsafe_code, reason = "the fork start method's contract is the caller's")]
    pub unsafe fn start_unchecked(&mut self) -> Result<()> {
        self.check_can_start()?;
        let method = self.start_method();
        if method != StartMethod::Fork {
            sys::keep_startup_hook();
            if !sys::startup_hook_ran() {
                return Err(Error::StartupHookMissing);
            }
        }
        children::reap_finished();
        let body = match std::mem::replace(&mut self.state, State::Closed) {
            State::Initial(body) => body,
            other => {
                self.state = other;
                return Err(Error::InvalidState("cannot start a process twice".into()));
            }
        };
        // Drop the body on every path but success (the target and its arguments go away, as in CPython).
        let mut me = identity::next_child(self.daemon, self.name_prefix);
        if self.name.is_empty() {
            self.name = me.name.clone();
        } else {
            me.name = self.name.clone();
        }
        let (alive, keepalive) = match liveness::for_child(self.daemon) {
            Ok(pair) => pair,
            Err(e) => {
                self.state = State::Initial(body);
                return Err(e);
            }
        };
        let started = match (method, body) {
            (_, Body::Job(Err(e))) => return Err(e),
            (StartMethod::Fork, Body::Job(Ok(job))) => {
                // SAFETY: the caller upholds the fork contract (checked by `start`).
                unsafe { start::fork::launch(ForkBody::Job(job), me, alive, keepalive) }
            }
            (StartMethod::Fork, Body::Closure(closure)) => {
                // SAFETY: as above.
                unsafe { start::fork::launch(ForkBody::Closure(closure), me, alive, keepalive) }
            }
            (_, Body::Closure(_)) => {
                return Err(Error::InvalidState("a capturing closure can only run with the fork start method".into()));
            }
            (StartMethod::Spawn, Body::Job(Ok(job))) => start::spawn::launch(job, me, alive, keepalive),
            (StartMethod::ForkServer, Body::Job(Ok(job))) => start::forkserver::launch(job, me, alive, keepalive),
        }?;
        let record = ChildRecord::new(
            started.pid,
            self.name.clone(),
            self.daemon,
            started.pidfd,
            started.exit,
            started.keepalive,
        );
        children::register(Arc::clone(&record));
        self.state = State::Started(record);
        tracing::debug!(pid = self.pid(), name = %self.name, %method, "started a process");
        Ok(())
    }

    fn check_can_start(&self) -> Result<()> {
        match self.state {
            State::Closed => return Err(closed()),
            State::Started(_) => return Err(Error::InvalidState("cannot start a process twice".into())),
            State::Initial(_) => {}
        }
        if self.creator != std::process::id() {
            return Err(Error::InvalidState("can only start a process object created by current process".into()));
        }
        if identity::me().daemon {
            return Err(Error::DaemonCannotHaveChildren);
        }
        Ok(())
    }

    fn record(&self) -> Result<&Arc<ChildRecord>> {
        match &self.state {
            State::Started(record) => Ok(record),
            State::Initial(_) => Err(Error::InvalidState("can only join a started process".into())),
            State::Closed => Err(closed()),
        }
    }

    /// Waits for the child to end and returns its exit code (see [`exitcode`](Self::exitcode)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the process was never started or is closed.
    pub fn join(&mut self) -> Result<i32> {
        let record = self.record()?;
        let code = record.wait(None)?.unwrap_or(children::EXITCODE_UNKNOWN);
        children::forget(record.pid);
        Ok(code)
    }

    /// Waits up to `timeout` for the child to end: `Some(exit code)` if it ended, `None` if it still
    /// runs. A zero timeout only checks.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let record = self.record()?;
        let code = record.wait(Some(timeout))?;
        if code.is_some() {
            children::forget(record.pid);
        }
        Ok(code)
    }

    /// Whether the child has started and not yet ended (false once closed).
    pub fn is_alive(&self) -> bool {
        match &self.state {
            State::Started(record) => matches!(record.poll(), Ok(None)),
            _ => false,
        }
    }

    /// The child's pid, once started.
    #[doc(alias = "ident")]
    pub fn pid(&self) -> Option<i32> {
        match &self.state {
            State::Started(record) => Some(record.pid),
            _ => None,
        }
    }

    /// How the child ended: `None` before start and while it runs; its exit status (`0` after a
    /// normal return, `1` after a panic, `n` after `std::process::exit(n)`); minus the signal number
    /// if a signal ended it (`-15` after [`terminate`](Self::terminate)); `255` if the fork server
    /// died before it could report the status.
    pub fn exitcode(&self) -> Option<i32> {
        match &self.state {
            State::Started(record) => record.poll().ok().flatten(),
            _ => None,
        }
    }

    /// Sends `SIGTERM` (CPython `terminate()`); the child's destructors and exit handlers do not run.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] before start or after close.
    pub fn terminate(&self) -> Result<()> {
        self.record()?.signal(sys::signals::SIGTERM)
    }

    /// Sends `SIGKILL` (CPython `kill()`).
    ///
    /// # Errors
    ///
    /// As [`terminate`](Self::terminate).
    pub fn kill(&self) -> Result<()> {
        self.record()?.signal(sys::signals::SIGKILL)
    }

    /// Sends `SIGINT` (CPython 3.14 `interrupt()`). A Rust child with the default disposition ends
    /// with exit code `-2`; CPython's ends with 1 (its `KeyboardInterrupt`).
    ///
    /// # Errors
    ///
    /// As [`terminate`](Self::terminate).
    pub fn interrupt(&self) -> Result<()> {
        self.record()?.signal(sys::signals::SIGINT)
    }

    /// A descriptor that becomes readable when the child ends, to wait on together with other
    /// descriptors (see [`wait`](crate::wait)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] before start (CPython: "process not started") or after close.
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        match &self.state {
            State::Started(record) => Ok(record.pidfd.as_fd()),
            State::Initial(_) => Err(Error::InvalidState("process not started".into())),
            State::Closed => Err(closed()),
        }
    }

    /// Releases the resources of a process that has ended. Closing twice is allowed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] while the child still runs.
    pub fn close(&mut self) -> Result<()> {
        if let State::Started(record) = &self.state {
            if record.poll()?.is_none() {
                return Err(Error::InvalidState(
                    "Cannot close a process while it is still running. You should first call join() or terminate()."
                        .into(),
                ));
            }
            children::forget(record.pid);
        }
        self.state = State::Closed;
        Ok(())
    }
}

fn closed() -> Error {
    Error::InvalidState("process object is closed".into())
}

impl Drop for Process {
    fn drop(&mut self) {
        if let State::Started(record) = &self.state {
            // Reap now if it has ended; a running child stays registered and is reaped later.
            if matches!(record.poll(), Ok(Some(_))) {
                children::forget(record.pid);
            }
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// CPython's repr: `<Process name='Process-1' pid=1234 parent=1233 started daemon>`.
impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Process name='{}'", self.name)?;
        match &self.state {
            State::Initial(_) => f.write_str(" initial")?,
            State::Closed => f.write_str(" closed")?,
            State::Started(record) => {
                write!(f, " pid={} parent={}", record.pid, self.creator)?;
                match record.known_exitcode() {
                    None => f.write_str(" started")?,
                    Some(code) => write!(f, " stopped exitcode={}", exitcode_name(code))?,
                }
            }
        }
        if self.daemon {
            f.write_str(" daemon")?;
        }
        f.write_str(">")
    }
}

fn exitcode_name(code: i32) -> String {
    match code {
        -1 => "-SIGHUP".into(),
        -2 => "-SIGINT".into(),
        -9 => "-SIGKILL".into(),
        -15 => "-SIGTERM".into(),
        other => other.to_string(),
    }
}
