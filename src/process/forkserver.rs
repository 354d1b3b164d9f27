//! The fork server: a single-threaded process that forks children on request
//! (≈ CPython `forkserver.py`).
//!
//! # Protocol
//!
//! The server is a fresh execution of the program's binary (`ROLE_VAR=forkserver`), started on
//! first use by the process that owns it, with one end of a `SOCK_SEQPACKET` socket pair at
//! descriptor 3. That socket is the control channel; only the owner holds the other end, so no other
//! process can reach the server (CPython's server listens on a filesystem socket and needs an
//! authkey for that reason). Every message is one packet, encoded with postcard.
//!
//! The server does not start children itself: it forks *spares*, children that wait for their
//! orders on a socket of their own, and hands each spare to the owner. The owner keeps one request
//! for a spare in flight, so that when it starts a process the next spare is (usually) forked
//! already: starting a process is one message from the owner to the spare, and `fork()` runs in the
//! server while the new child runs. An owner about to start several processes at once (a pool's
//! workers) asks for up to 8 spares ahead, which the server forks while the owner sets the
//! processes up; once they are taken, one request is in flight again.
//!
//! ```text
//! server → owner   Hello { version, exe, pid, reports_exits }          once, at start
//! owner → server   Request::Spare
//! server → owner   Reply::Spare { pid }  + fds [pidfd, order socket, status pipe read end (*)]
//!                | Reply::Failed { reason }
//! owner → spare    SpareOrder::Run { packet }   + fds [packet fds...]      small launch packets
//!                | SpareOrder::ReadFrom         + fds [launch socket]      larger ones follow there
//! server → status pipe (*)   exit code as 8 little-endian bytes, then close   when the spare ends
//! ```
//!
//! (*) Only where the kernel cannot report exit codes itself. On Linux 6.15+ the server lets the
//! kernel reap its children (`SIGCHLD` ignored) and the owner reads the exit code from its pidfd
//! (`PIDFD_INFO_EXIT`); `reports_exits` in the hello says which case holds. Otherwise the server
//! polls the pidfds of its spares and writes each one's exit code on its status pipe.
//!
//! A spare closes the server's descriptors and, once ordered, continues exactly as a spawned child
//! does: it checks its launch packet and runs its target. A spare whose order socket reaches end of
//! file (its owner exited, or dropped it) exits at once.
//!
//! The server ignores `SIGINT` (Ctrl-C reaches the whole process group), as CPython's does; its
//! spares get back the disposition it started with (a `SIGINT` sent to one before that waits).
//!
//! When the control socket reaches end of file (the owner exited or was killed), the server exits;
//! children it forked keep running (daemon children are killed by their own liveness pipe). If the
//! server dies, the owner starts a new one on its next request; status pipes of children in flight
//! then reach end of file and their exit code reads as 255, as in CPython.

use std::io::{IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::bootstrap;
use crate::context::StartMethod;
use crate::reduction::{self, Message};
use crate::sys::{self, ExeIdentity, ForkResult, WaitOutcome};

/// The first message of the server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) version: String,
    pub(crate) exe: ExeIdentity,
    pub(crate) pid: i32,
    /// Whether the kernel keeps spares' exit codes for pidfd holders (no status pipes then).
    pub(crate) reports_exits: bool,
}

/// A request to the server. (An enum, not an empty struct: a packet must not encode to zero bytes,
/// which would read as end of file.)
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Fork a spare and hand it over.
    Spare,
}

/// The server's answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// A spare. Descriptors: `[pidfd, order socket]`, then the status pipe's read end unless the
    /// kernel reports exit codes.
    Spare {
        pid: i32,
    },
    Failed {
        reason: String,
    },
}

/// What the owner tells a spare to do.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SpareOrder {
    /// Run this launch packet (descriptors attached).
    Run { packet: Vec<u8> },
    /// Read the launch packet from the attached launch socket.
    ReadFrom,
}

/// The largest control packet.
pub(crate) const MAX_PACKET: usize = 64 * 1024;

/// Launch packets up to this size travel inside the order.
pub(crate) const INLINE_PACKET_LIMIT: usize = 32 * 1024;
/// Sends one packet on a `SOCK_SEQPACKET` socket.
pub(crate) fn send_packet<T: Serialize>(
    socket: BorrowedFd<'_>,
    value: &T,
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let message = reduction::encode(value).map_err(std::io::Error::other)?;
    sys::send_with_fds(socket, &[IoSlice::new(&message.bytes)], fds)?;
    Ok(())
}

/// Receives one packet; `Ok(None)` at end of file.
pub(crate) fn recv_packet<T: serde::de::DeserializeOwned>(
    socket: BorrowedFd<'_>,
) -> std::io::Result<Option<(T, Vec<OwnedFd>)>> {
    // Allocate exactly the packet's size: in a freshly forked child every page touched is a
    // copy-on-write fault.
    let len = sys::next_packet_len(socket)?;
    if len > MAX_PACKET {
        return Err(std::io::Error::other(format!("control packet of {len} bytes exceeds {MAX_PACKET}")));
    }
    let mut buf = vec![0u8; len.max(1)];
    let mut fds = Vec::new();
    let n = sys::recv_with_fds(socket, &mut buf, &mut fds)?;
    if n == 0 {
        return Ok(None);
    }
    let value =
        reduction::decode(Message { bytes: buf[..n].to_vec(), fds: Vec::new() }).map_err(std::io::Error::other)?;
    Ok(Some((value, fds)))
}

/// A spare the server watches, to report its exit code (only where the kernel does not).
struct Tracked {
    pidfd: OwnedFd,
    status: std::fs::File,
}

/// Runs the server on `control` until its owner goes away. Never returns. With `status_pipes`,
/// exit codes go through status pipes even where the kernel could report them (for tests).
pub(crate) fn serve(control: OwnedFd, status_pipes: bool) -> ! {
    // Where the kernel can report exit codes through pidfds, let it reap children at once: then
    // a child's exit code never waits for this loop, which may be busy forking the next spare.
    let reports_exits = !status_pipes && kernel_reports_exit_codes();
    // Ctrl-C reaches the whole process group: the server outlives it, as CPython's does, so that
    // processes can still be started (and no spare is orphaned by its server's death); each spare
    // gets back what the server started with. Held (ignored and blocked), not only ignored: a
    // SIGINT sent to a spare before it undoes that waits for it instead of being discarded.
    let interrupt_before = sys::hold_interrupt();
    let hello = match super::launch::own_exe() {
        Ok(exe) => {
            Hello { version: env!("CARGO_PKG_VERSION").into(), exe, pid: std::process::id() as i32, reports_exits }
        }
        Err(e) => bootstrap::die(&format!("multiproc fork server: {e}")),
    };
    if send_packet(control.as_fd(), &hello, &[]).is_err() {
        sys::raw_exit(0);
    }
    let mut tracked: Vec<Tracked> = Vec::new();
    loop {
        // 1. Wait for a request or for a tracked spare to end.
        let mut fds: Vec<BorrowedFd<'_>> = vec![control.as_fd()];
        fds.extend(tracked.iter().map(|c| c.pidfd.as_fd()));
        let ready = match sys::poll_readable(&fds, None) {
            Ok(r) => r,
            Err(e) => bootstrap::die(&format!("multiproc fork server: poll failed: {e}")),
        };
        let request_ready = ready[0].ready;
        let ended: Vec<usize> = ready[1..].iter().enumerate().filter(|(_, r)| r.ready).map(|(i, _)| i).collect();
        drop(fds);
        // 2. Report spares that ended.
        for index in ended.into_iter().rev() {
            report_exit(tracked.swap_remove(index));
        }
        // 3. Serve the request.
        if request_ready {
            match recv_packet::<Request>(control.as_fd()) {
                Ok(Some((Request::Spare, _))) => {
                    hand_over_spare(&control, &mut tracked, !reports_exits, interrupt_before)
                }
                // End of file or a broken socket: the owner is gone.
                Ok(None) | Err(_) => sys::raw_exit(0),
            }
        }
    }
}

/// Whether the kernel reaps our children and keeps their exit codes for pidfd holders
/// (`PIDFD_INFO_EXIT`, Linux 6.15). Probed once: a child, auto-reaped, that exits once the server
/// holds its pidfd. On success automatic reaping stays on.
///
/// The child waits for the server's pidfd before it exits: one that exited at once was often reaped
/// before `pidfd_open`, which then failed and read as "unsupported", so that every exit went
/// through a status pipe (a wake-up of the server on the way to each `join`).
fn kernel_reports_exit_codes() -> bool {
    sys::reap_children_automatically(true);
    let supported = sys::pipe_cloexec().is_ok_and(|(hold, release)| {
        // SAFETY: the server is single-threaded; the child only closes, reads and calls _exit.
        match unsafe { sys::fork() } {
            Ok(ForkResult::Child) => {
                drop(release);
                // End of file: the server holds the pidfd (or gave up).
                let _ = std::io::Read::read(&mut std::fs::File::from(hold), &mut [0u8; 1]);
                sys::raw_exit(0)
            }
            Ok(ForkResult::Parent(pid)) => {
                drop(hold);
                let pidfd = sys::pidfd_open(pid);
                drop(release);
                pidfd.is_ok_and(|pidfd| exit_code_reported(pidfd.as_fd()))
            }
            Err(_) => false,
        }
    });
    if !supported {
        sys::reap_children_automatically(false);
    }
    supported
}

/// Whether the kernel reports the exit code (0) of the ended probe child behind `pidfd`. The pidfd
/// turns readable a moment before the child is reaped and its code recorded: until then the kernel
/// answers "no code yet"; after it, a kernel that keeps no codes answers `ESRCH`.
fn exit_code_reported(pidfd: BorrowedFd<'_>) -> bool {
    let _ = sys::poll_readable(&[pidfd], Some(std::time::Duration::from_secs(5)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match sys::pidfd_info_exit(pidfd) {
            Ok(Some(code)) => return code == 0,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::yield_now(),
            Ok(None) | Err(_) => return false,
        }
    }
}

/// Forks a spare and sends it to the owner (with a status pipe when `track`).
fn hand_over_spare(control: &OwnedFd, tracked: &mut Vec<Tracked>, track: bool, interrupt_before: sys::InterruptBefore) {
    let reply = fork_spare(tracked, interrupt_before).and_then(|(pid, pidfd, orders)| {
        let status = if track { Some(sys::pipe_cloexec()?) } else { None };
        let mut fds = vec![pidfd.as_fd(), orders.as_fd()];
        fds.extend(status.as_ref().map(|(read, _)| read.as_fd()));
        send_packet(control.as_fd(), &Reply::Spare { pid }, &fds)?;
        if let Some((_, write)) = status {
            tracked.push(Tracked { pidfd, status: std::fs::File::from(write) });
        }
        Ok(())
    });
    if let Err(e) = reply {
        let _ = send_packet(control.as_fd(), &Reply::Failed { reason: format!("fork a spare: {e}") }, &[]);
    }
}

/// Forks a spare child: its pid, pidfd and the server's end of its order socket.
fn fork_spare(
    tracked: &mut Vec<Tracked>,
    interrupt_before: sys::InterruptBefore,
) -> std::io::Result<(i32, OwnedFd, OwnedFd)> {
    let (ours, theirs) = sys::socketpair_cloexec(sys::SocketKind::SeqPacket)?;
    // SAFETY: the server is single-threaded, so no lock can be held by another thread at fork.
    match unsafe { sys::fork() }? {
        ForkResult::Child => {
            // The server's descriptors are not the child's.
            drop(std::mem::take(tracked));
            drop(ours);
            sys::close_inherited_fd();
            // Children must not inherit the server's automatic reaping.
            sys::reap_children_automatically(false);
            sys::release_interrupt(interrupt_before);
            run_spare(theirs)
        }
        ForkResult::Parent(pid) => {
            drop(theirs);
            let pidfd = sys::pidfd_open(pid)?;
            Ok((pid, pidfd, ours))
        }
    }
}

/// A spare child: waits for its order, then runs as a launched child. Never returns.
fn run_spare(orders: OwnedFd) -> ! {
    match recv_packet::<SpareOrder>(orders.as_fd()) {
        Ok(Some((SpareOrder::Run { packet }, fds))) => {
            drop(orders);
            let launched = super::launch::check_packet(Message { bytes: packet, fds }, None);
            bootstrap::run_checked_child(launched, StartMethod::ForkServer)
        }
        Ok(Some((SpareOrder::ReadFrom, mut fds))) if !fds.is_empty() => {
            drop(orders);
            bootstrap::run_launched_child(fds.remove(0), StartMethod::ForkServer, false)
        }
        // The owner went away (or sent nonsense): nothing to run.
        _ => sys::raw_exit(0),
    }
}

fn report_exit(child: Tracked) {
    let code = match sys::wait_pidfd(child.pidfd.as_fd(), true) {
        Ok(WaitOutcome::Exited(code)) => code,
        _ => super::children::EXITCODE_UNKNOWN,
    };
    let mut status = child.status;
    // The owner may have dropped its handle; a closed pipe is fine.
    let _ = status.write_all(&i64::from(code).to_le_bytes());
}
