//! The fork launcher: a plain `fork()` of the calling process (≈ CPython `popen_fork`).
//!
//! The child has the parent's memory, so it runs the body directly: a [`Job`] or a capturing
//! closure. Only the forking thread exists in the child; `Process::start` refuses this method while
//! the parent has other threads, unless the caller uses `start_unchecked`.

use std::io::Write;
use std::os::fd::OwnedFd;

use super::Started;
use crate::context::StartMethod;
use crate::error::{Error, IoContext, Result};
use crate::process::bootstrap;
use crate::process::children::ExitSource;
use crate::process::identity::{ParentDescription, SelfDescription};
use crate::process::target::Job;
use crate::sys::{self, ForkResult};

/// What a forked child runs.
pub(crate) enum ForkBody {
    /// A target with encoded arguments, as the other methods run it.
    Job(Job),
    /// A capturing closure, which only a forked child can run.
    Closure(Box<dyn FnOnce() -> i32 + Send>),
}

impl std::fmt::Debug for ForkBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForkBody::Job(job) => job.fmt(f),
            ForkBody::Closure(_) => f.write_str("Closure"),
        }
    }
}

/// Refuses to fork while other threads run.
pub(crate) fn check_single_threaded() -> Result<()> {
    let threads = sys::main_thread_count().context("count this process's threads")?;
    if threads > 1 { Err(Error::ForkWithThreads { threads }) } else { Ok(()) }
}

/// Forks a child that runs `body` as the process described by `me`.
///
/// # Safety
///
/// No other thread may hold a lock the child needs (see `sys::fork`). `Process::start` ensures it
/// by checking that the process has a single thread.
pub(crate) unsafe fn launch(
    body: ForkBody,
    me: SelfDescription,
    alive: OwnedFd,
    keepalive: Option<OwnedFd>,
) -> Result<Started> {
    let parent = ParentDescription { pid: std::process::id() as i32, name: crate::process::identity::me().name };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the caller guarantees no other thread holds a lock the child needs.
    match unsafe { sys::fork() }.context("fork a child process")? {
        ForkResult::Child => {
            // The child must not hold its own liveness pipe open.
            drop(keepalive);
            run_child(body, me, parent, alive)
        }
        ForkResult::Parent(pid) => {
            drop(alive);
            let pidfd = sys::pidfd_open(pid).context("open a pidfd for the child")?;
            Ok(Started { pid, pidfd, exit: ExitSource::Direct, keepalive })
        }
    }
}

fn run_child(body: ForkBody, me: SelfDescription, parent: ParentDescription, alive: OwnedFd) -> ! {
    bootstrap::reset_after_fork();
    let code = bootstrap::enter_child(me, parent, StartMethod::Fork, Some(alive), || match body {
        ForkBody::Job(job) => (job.entry)(job.payload),
        ForkBody::Closure(closure) => closure(),
    });
    bootstrap::finish_child_raw(code)
}
