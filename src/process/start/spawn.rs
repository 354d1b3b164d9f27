//! The spawn launcher: fork + exec of the current executable (≈ CPython `popen_spawn_posix`).
//!
//! The child is a fresh execution of `/proc/self/exe` with the launch socket at descriptor 3 and
//! the role in the environment; the start-up hook takes over before `main` (see `bootstrap`). The
//! parent sends the launch packet and waits for the child's acknowledgement, so that a refused
//! launch is an error of `start()`.

use std::os::fd::{AsFd, OwnedFd};

use super::Started;
use crate::error::{IoContext, Result};
use crate::process::children::ExitSource;
use crate::process::identity::SelfDescription;
use crate::process::launch::{self, ROLE_CHILD, ROLE_VAR};
use crate::process::target::Job;
use crate::sys::{self, SocketKind};

/// Starts `job` in a spawned child described by `me`.
pub(crate) fn launch(job: Job, me: SelfDescription, alive: OwnedFd, keepalive: Option<OwnedFd>) -> Result<Started> {
    let (parent_end, child_end) = sys::socketpair_cloexec(SocketKind::Stream).context("create a launch socket")?;
    let pid = sys::spawn_current_exe(ROLE_VAR, ROLE_CHILD, child_end.as_fd()).context("spawn a child process")?;
    drop(child_end);
    let pidfd = sys::pidfd_open(pid).context("open a pidfd for the child")?;
    let started = Started { pid, pidfd, exit: ExitSource::Direct, keepalive };
    let handshake =
        launch::send_packet(parent_end.as_fd(), job, me, alive).and_then(|()| launch::recv_ack(parent_end.as_fd()));
    if let Err(e) = handshake {
        // The child cannot run; make sure it ends and is reaped before reporting.
        let _ = sys::pidfd_signal(started.pidfd.as_fd(), sys::signals::SIGKILL);
        let _ = sys::wait_pidfd(started.pidfd.as_fd(), true);
        return Err(e);
    }
    Ok(started)
}
