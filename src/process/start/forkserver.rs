//! The fork-server launcher, the client side of `process::forkserver` (≈ CPython
//! `popen_forkserver`): starts the server on first use, takes spares from it, orders them to run,
//! restarts the server if it died.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use super::Started;
use crate::connection::frame;
use crate::error::{Error, IoContext, Result};
use crate::process::children::ExitSource;
use crate::process::forkserver::{self, Hello, Reply, Request, SpareOrder};
use crate::process::identity::SelfDescription;
use crate::process::launch::{self, ROLE_VAR};
use crate::process::target::Job;
use crate::sys::{self, SocketKind};

/// The running server, from its owner's side.
#[derive(Debug)]
struct Server {
    control: OwnedFd,
    pid: i32,
    pidfd: OwnedFd,
    /// `Request::Spare`s sent whose replies are still unread.
    spares_requested: usize,
    /// Whether the kernel reports its children's exit codes (no status pipes), as its hello said.
    reports_exits: bool,
}

/// A child forked by the server that waits for its order.
#[derive(Debug)]
struct Spare {
    pid: i32,
    pidfd: OwnedFd,
    orders: OwnedFd,
    status: Option<std::fs::File>,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

fn server() -> MutexGuard<'static, Option<Server>> {
    SERVER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts `job` in a child forked by the fork server, with liveness read end `alive`.
pub(crate) fn launch(job: Job, me: SelfDescription, alive: OwnedFd, keepalive: Option<OwnedFd>) -> Result<Started> {
    let packet = launch::encode_packet(job, me, alive)?;
    let spare = if packet.bytes.len() <= forkserver::INLINE_PACKET_LIMIT && packet.fds.len() <= sys::MAX_FDS_PER_MESSAGE
    {
        order_spare(&SpareOrder::Run { packet: packet.bytes.clone() }, &packet.borrowed_fds())?
    } else {
        // A large packet follows on a launch socket; the child reads it after its order.
        let (parent_end, child_end) = sys::socketpair_cloexec(SocketKind::Stream).context("create a launch socket")?;
        let spare = order_spare(&SpareOrder::ReadFrom, &[child_end.as_fd()])?;
        drop(child_end);
        // If the packet cannot be sent, the child reads end of file and exits; report the error.
        frame::send(parent_end.as_fd(), &packet)?;
        spare
    };
    Ok(Started { pid: spare.pid, pidfd: spare.pidfd, exit: ExitSource::ForkServer(spare.status), keepalive })
}

/// The fork server's pid, starting the server if needed (for tests and diagnostics).
///
/// # Errors
///
/// [`Error::ForkServer`](crate::Error::ForkServer) or [`Error::Io`](crate::Error::Io) if the
/// server is not running and cannot be started.
pub fn server_pid() -> Result<i32> {
    let mut guard = server();
    Ok(running(&mut guard)?.pid)
}

/// Whether the fork server (started if needed) lets the kernel report its children's exit codes
/// (Linux 6.15+) instead of reporting each on a status pipe (for tests and diagnostics).
///
/// # Errors
///
/// As [`server_pid`].
pub fn server_reports_exits() -> Result<bool> {
    let mut guard = server();
    Ok(running(&mut guard)?.reports_exits)
}

/// Most spares [`prepare_spares`] has on their way at once (each carries descriptors in flight
/// to this process until it is taken, and waits as a process).
const SPARES_AHEAD_MAX: usize = 8;

/// Asks the server for spares until `count` (at most [`SPARES_AHEAD_MAX`]) are on their way,
/// without waiting for any: a caller about to start `count` children (a pool's workers) then
/// takes each already forked, instead of waiting for one fork after another. Once they are taken,
/// one spare is kept ahead again. Best effort: a server that cannot be started or reached is left
/// to the starts themselves, which report it.
pub(crate) fn prepare_spares(count: usize) {
    let mut guard = server();
    if running(&mut guard).is_ok() {
        request_spares_until(&mut guard, count.min(SPARES_AHEAD_MAX));
    }
}

/// Takes a spare, gives it `order` with `fds`, and asks the server for the next spare.
fn order_spare(order: &SpareOrder, fds: &[BorrowedFd<'_>]) -> Result<Spare> {
    let mut guard = server();
    let mut last_error = None;
    // A spare can be gone (killed by someone); then the next one is asked for.
    for _attempt in 0..3 {
        let spare = take_spare(&mut guard)?;
        // Ask for the next spare first (unless one is on its way): the server then forks it on
        // another CPU while this one starts.
        request_spares_until(&mut guard, 1);
        match forkserver::send_packet(spare.orders.as_fd(), order, fds) {
            Ok(()) => return Ok(spare),
            Err(e) => last_error = Some(e),
        }
    }
    let reason = last_error.map(|e| e.to_string()).unwrap_or_default();
    Err(Error::ForkServer(format!("the fork server's children died before they could be started: {reason}")))
}

/// The server, started if there is none.
fn running(guard: &mut Option<Server>) -> Result<&mut Server> {
    if guard.is_none() {
        *guard = Some(start_server()?);
    }
    guard.as_mut().ok_or_else(|| Error::ForkServer("no fork server".into()))
}

/// Receives the spare asked for earlier (asking now if needed); restarts a dead server once.
fn take_spare(guard: &mut Option<Server>) -> Result<Spare> {
    let mut last_error = String::new();
    for _attempt in 0..2 {
        running(guard)?;
        request_spares_until(guard, 1);
        let Some(server) = guard.as_mut() else {
            last_error = "the fork server stopped answering".into();
            continue;
        };
        server.spares_requested = server.spares_requested.saturating_sub(1);
        match forkserver::recv_packet::<Reply>(server.control.as_fd()) {
            Ok(Some((Reply::Spare { pid }, fds))) => match spare_from(pid, fds) {
                // A spare whose server died is an orphan: nobody may be left to reap it and keep
                // its exit code. Let it go (it exits when its order socket closes).
                Some(_) if server_has_ended(server) => last_error = "the fork server died".into(),
                Some(spare) => return Ok(spare),
                None => last_error = "the fork server sent a spare without its descriptors".into(),
            },
            Ok(Some((Reply::Failed { reason }, _))) => return Err(Error::ForkServer(reason)),
            Ok(None) => last_error = "the fork server closed its control socket".into(),
            Err(e) => last_error = e.to_string(),
        }
        discard_server(guard);
    }
    Err(Error::ForkServer(last_error))
}

fn spare_from(pid: i32, fds: Vec<OwnedFd>) -> Option<Spare> {
    let mut fds = fds.into_iter();
    let (pidfd, orders) = (fds.next()?, fds.next()?);
    Some(Spare { pid, pidfd, orders, status: fds.next().map(std::fs::File::from) })
}

fn server_has_ended(server: &Server) -> bool {
    matches!(sys::poll_one(server.pidfd.as_fd(), sys::Interest::Read, Some(std::time::Duration::ZERO)), Ok(true))
}

/// Asks the server for a spare without waiting for it. A server that cannot be reached is
/// discarded; the next launch starts a new one.
fn request_spare(guard: &mut Option<Server>) {
    let Some(server) = guard.as_mut() else { return };
    match forkserver::send_packet(server.control.as_fd(), &Request::Spare, &[]) {
        Ok(()) => server.spares_requested += 1,
        Err(_) => discard_server(guard),
    }
}

/// Asks for spares until `count` are on their way (none waits for them).
fn request_spares_until(guard: &mut Option<Server>, count: usize) {
    while guard.as_ref().is_some_and(|server| server.spares_requested < count) {
        request_spare(guard);
    }
}

/// Kills and reaps a server that stopped answering.
fn discard_server(guard: &mut Option<Server>) {
    if let Some(dead) = guard.take() {
        tracing::debug!(pid = dead.pid, "fork server gone; restarting it");
        let _ = sys::pidfd_signal(dead.pidfd.as_fd(), sys::signals::SIGKILL);
        let _ = sys::wait_pidfd(dead.pidfd.as_fd(), true);
    }
}

fn start_server() -> Result<Server> {
    let (ours, theirs) = sys::socketpair_cloexec(SocketKind::SeqPacket).context("create the fork server socket")?;
    let pid = sys::spawn_current_exe(ROLE_VAR, launch::test_hooks::fork_server_role(), theirs.as_fd())
        .context("start the fork server")?;
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
    tracing::debug!(pid, reports_exits = hello.reports_exits, "fork server started");
    Ok(Server { control: ours, pid, pidfd, spares_requested: 0, reports_exits: hello.reports_exits })
}

/// In a forked child: the parent's server is not ours; close our copy of its socket.
pub(crate) fn forget_after_fork() {
    *server() = None;
}
