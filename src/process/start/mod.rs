//! The launchers, one per start method. Each turns a body and a description into a running child
//! and returns what the handle needs: pid, pidfd and where the exit status comes from.

#[allow(unsafe_code, reason = "the fork start method forks")]
pub(crate) mod fork;
pub(crate) mod forkserver;
pub(crate) mod spawn;

use std::os::fd::OwnedFd;

use super::children::ExitSource;

/// A child that has been started.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) exit: ExitSource,
    /// For a daemon: the write end of its liveness pipe (see `liveness`).
    pub(crate) keepalive: Option<OwnedFd>,
}
