//! Liveness pipes: how children learn that their parent has gone.
//!
//! A pipe's read end becomes readable (end of file) exactly when every write end is closed. The
//! parent keeps the write ends (close-on-exec, and closed in forked children), so a child's read end
//! signals the parent's death, however it ended, `SIGKILL` included.
//!
//! * Non-daemon children share one pipe per parent; they use it to answer
//!   `parent_process().is_alive()`.
//! * Each daemon child gets a pipe of its own, because it arms the read end so that the kernel
//!   kills it when the parent goes (`sys::arm_kill_on_hangup`), and that arming belongs to the open
//!   file description, which must not be shared with a sibling.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use crate::error::{IoContext, Result};
use crate::sys;

static SHARED: Mutex<Option<(OwnedFd, OwnedFd)>> = Mutex::new(None);

/// The descriptors for a new child: the read end it gets, and for a daemon the write end the
/// parent must keep for as long as the child may run.
pub(crate) fn for_child(daemon: bool) -> Result<(OwnedFd, Option<OwnedFd>)> {
    if daemon {
        let (read, write) = sys::pipe_cloexec().context("create a liveness pipe")?;
        return Ok((read, Some(write)));
    }
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    let (read, _) = match &mut *shared {
        Some(pair) => pair,
        none => none.insert(sys::pipe_cloexec().context("create the liveness pipe")?),
    };
    Ok((sys::dup_cloexec(read.as_fd()).context("duplicate the liveness pipe")?, None))
}

/// In a forked child: closes the parent's shared pipe, so that the child does not keep its
/// siblings' parent "alive". The child makes its own pipe when it starts children.
pub(crate) fn forget_after_fork() {
    *SHARED.lock().unwrap_or_else(|p| p.into_inner()) = None;
}
