//! The fork-server launcher, the client side of `process::forkserver` (≈ CPython
//! `popen_forkserver`): starts the server on first use, asks it for a child, restarts it if it died.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use super::Started;
use crate::error::{Error, IoContext, Result};
use crate::frame;
use crate::process::children::ExitSource;
use crate::process::forkserver::{self, Hello, Reply, Request};
use crate::process::identity::SelfDescription;
use crate::process::launch::{self, ROLE_FORKSERVER, ROLE_VAR};
use crate::process::target::Job;
use crate::sys::{self, SocketKind};

/// The running server, from its owner's side.
#[derive(Debug)]
struct Server {
    control: OwnedFd,
    pid: i32,
    pidfd: OwnedFd,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

fn server() -> MutexGuard<'static, Option<Server>> {
    SERVER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts `job` in a child forked by the fork server, with liveness read end `alive`.
pub(crate) fn launch(job: Job, me: SelfDescription, alive: OwnedFd, keepalive: Option<OwnedFd>) -> Result<Started> {
    let (status_read, status_write) = sys::pipe_cloexec().context("create a status pipe")?;
    let packet = launch::encode_packet(job, me, alive)?;
    let (pid, pidfd) = if packet.bytes.len() <= forkserver::INLINE_PACKET_LIMIT
        && packet.fds.len() < sys::MAX_FDS_PER_MESSAGE
    {
        let mut fds = vec![status_write.as_fd()];
        fds.extend(packet.borrowed_fds());
        request_fork(&Request::ForkWith { packet: packet.bytes.clone() }, &fds)?
    } else {
        // A large packet follows on a launch socket; the child reads it after the fork.
        let (parent_end, child_end) = sys::socketpair_cloexec(SocketKind::Stream).context("create a launch socket")?;
        let forked = request_fork(&Request::Fork, &[child_end.as_fd(), status_write.as_fd()])?;
        drop(child_end);
        // If the packet cannot be sent, the child reads end of file and exits; report the error.
        frame::send(parent_end.as_fd(), &packet)?;
        forked
    };
    Ok(Started { pid, pidfd, exit: ExitSource::ForkServer(std::fs::File::from(status_read)), keepalive })
}

/// The fork server's pid, starting the server if needed (for tests and diagnostics).
pub fn server_pid() -> Result<i32> {
    let mut guard = server();
    if guard.is_none() {
        *guard = Some(start_server()?);
    }
    Ok(guard.as_ref().map(|s| s.pid).unwrap_or_default())
}

fn request_fork(request: &Request, fds: &[BorrowedFd<'_>]) -> Result<(i32, OwnedFd)> {
    let mut guard = server();
    let mut last_error = None;
    for _attempt in 0..2 {
        if guard.is_none() {
            *guard = Some(start_server()?);
        }
        let control = guard.as_ref().map(|s| s.control.as_fd()).expect("started above");
        let exchange =
            forkserver::send_packet(control, request, fds).and_then(|()| forkserver::recv_packet::<Reply>(control));
        match exchange {
            Ok(Some((Reply::Forked { pid }, mut fds))) if !fds.is_empty() => return Ok((pid, fds.remove(0))),
            Ok(Some((Reply::Failed { reason }, _))) => return Err(Error::ForkServer(reason)),
            Ok(_) => last_error = Some("the fork server closed its control socket".to_string()),
            Err(e) => last_error = Some(e.to_string()),
        }
        // The server died: reap it and start a new one.
        if let Some(dead) = guard.take() {
            tracing::debug!(pid = dead.pid, "fork server gone; restarting it");
            let _ = sys::pidfd_signal(dead.pidfd.as_fd(), sys::signals::SIGKILL);
            let _ = sys::wait_pidfd(dead.pidfd.as_fd(), true);
        }
    }
    Err(Error::ForkServer(last_error.unwrap_or_default()))
}

fn start_server() -> Result<Server> {
    let (ours, theirs) = sys::socketpair_cloexec(SocketKind::SeqPacket).context("create the fork server socket")?;
    let pid = sys::spawn_current_exe(ROLE_VAR, ROLE_FORKSERVER, theirs.as_fd()).context("start the fork server")?;
    drop(theirs);
    let pidfd = sys::pidfd_open(pid).context("open a pidfd for the fork server")?;
    let hello = forkserver::recv_packet::<Hello>(ours.as_fd()).context("greet the fork server")?;
    let Some((hello, _)) = hello else {
        let _ = sys::wait_pidfd(pidfd.as_fd(), true);
        return Err(Error::ForkServer("the fork server exited during start-up; see its standard error".into()));
    };
    let mine = launch::own_exe()?;
    if hello.exe != mine || hello.version != env!("CARGO_PKG_VERSION") {
        let _ = sys::pidfd_signal(pidfd.as_fd(), sys::signals::SIGKILL);
        let _ = sys::wait_pidfd(pidfd.as_fd(), true);
        return Err(Error::BinaryMismatch { parent: mine.to_string(), child: hello.exe.to_string() });
    }
    Ok(Server { control: ours, pid, pidfd })
}

/// In a forked child: the parent's server is not ours; close our copy of its socket.
pub(crate) fn forget_after_fork() {
    *server() = None;
}
