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
//! ```text
//! server → owner   Hello { version, exe, pid }                       once, at start
//! owner → server   Request::ForkWith { packet }   + fds [status pipe write end, packet fds...]
//!                | Request::Fork                  + fds [launch socket, status pipe write end]
//! server → owner   Reply::Forked { pid }   + fds [pidfd of the child]
//!                | Reply::Failed { reason }
//! server → status pipe   exit code as 8 little-endian bytes, then close   when the child ends
//! ```
//!
//! Small launch packets travel inside the request, so the child has its packet in memory the moment
//! it is forked; larger ones (over `INLINE_PACKET_LIMIT`) follow on a launch socket. The child closes
//! the server's descriptors and continues exactly as a spawned child does: it checks its launch
//! packet and runs its target.
//!
//! To take `fork()` off the critical path, the server keeps one *spare*: a child forked in advance
//! that waits on a socket of its own for its orders. A request hands the launch packet (or the
//! launch socket) to the spare and is answered at once with the spare's pid; the server forks the
//! next spare while the new child runs. A spare whose server goes away reads end of file and exits.
//!
//! ```text
//! server → spare   SpareOrder::Run { packet }   + fds [packet fds...]
//!                | SpareOrder::ReadFrom         + fds [launch socket]
//! ```
//!
//! The server polls the control socket and the pidfds of its children. When the control socket
//! reaches end of file (the owner exited or was killed), the server exits; children it started keep
//! running (daemon children are killed by their own liveness pipe). If the server dies, the owner
//! starts a new one on its next request; status pipes of children in flight reach end of file and
//! their exit code reads as 255, as in CPython.

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
}

/// A request to the server. (An enum, not an empty struct: a packet must not encode to zero bytes,
/// which would read as end of file.)
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Fork a child whose launch packet follows on the launch socket.
    /// Descriptors: `[launch socket, status pipe write end]`.
    Fork,
    /// Fork a child with this launch packet (small packets: the child has it at once).
    /// Descriptors: `[status pipe write end, then the packet's own descriptors]`.
    ForkWith { packet: Vec<u8> },
}

/// The server's answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Forked { pid: i32 },
    Failed { reason: String },
}

/// The largest control packet.
pub(crate) const MAX_PACKET: usize = 64 * 1024;

/// Launch packets up to this size travel inside the request.
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

struct Child {
    pidfd: OwnedFd,
    status: std::fs::File,
}

/// What the server tells its spare child to do.
#[derive(Debug, Serialize, Deserialize)]
enum SpareOrder {
    /// Run this launch packet (descriptors attached).
    Run { packet: Vec<u8> },
    /// Read the launch packet from the attached launch socket.
    ReadFrom,
}

/// A child forked in advance, waiting for its order.
struct Spare {
    pid: i32,
    pidfd: OwnedFd,
    orders: OwnedFd,
}

/// Runs the server on `control` until its owner goes away. Never returns.
pub(crate) fn serve(control: OwnedFd) -> ! {
    let hello = match super::launch::own_exe() {
        Ok(exe) => Hello { version: env!("CARGO_PKG_VERSION").into(), exe, pid: std::process::id() as i32 },
        Err(e) => bootstrap::die(&format!("multiproc fork server: {e}")),
    };
    if send_packet(control.as_fd(), &hello, &[]).is_err() {
        sys::raw_exit(0);
    }
    // Where the kernel can report exit codes through pidfds, let it reap children at once: then
    // a child's exit code never waits for this loop, which may be busy forking the next spare.
    let kernel_reports_exits = kernel_reports_exit_codes();
    let mut children: Vec<Child> = Vec::new();
    let mut spare: Option<Spare> = None;
    loop {
        // 0. Keep a spare ready.
        if spare.is_none() {
            spare = fork_spare(&mut children);
        }
        // 1. Wait for a request or for a child to end.
        let mut fds: Vec<BorrowedFd<'_>> = vec![control.as_fd()];
        fds.extend(children.iter().map(|c| c.pidfd.as_fd()));
        let ready = match sys::poll_readable(&fds, None) {
            Ok(r) => r,
            Err(e) => bootstrap::die(&format!("multiproc fork server: poll failed: {e}")),
        };
        let request_ready = ready[0].ready;
        let ended: Vec<usize> = ready[1..].iter().enumerate().filter(|(_, r)| r.ready).map(|(i, _)| i).collect();
        drop(fds);
        // 2. Report children that ended.
        for index in ended.into_iter().rev() {
            report_exit(children.swap_remove(index));
        }
        // 3. Serve the request.
        if request_ready {
            match recv_packet::<Request>(control.as_fd()) {
                Ok(Some((request, fds))) => {
                    // Where the kernel reports exit codes there is nothing to reap or report: the
                    // status pipe is closed unwritten, which tells the owner to ask the kernel.
                    let track = !kernel_reports_exits;
                    serve_request(&control, request, fds, &mut children, &mut spare, track);
                }
                // End of file or a broken socket: the owner is gone.
                Ok(None) | Err(_) => sys::raw_exit(0),
            }
        }
    }
}

/// Whether the kernel reaps our children and keeps their exit codes for pidfd holders
/// (`PIDFD_INFO_EXIT`, Linux 6.15). Probed once: a child that exits at once, auto-reaped. On
/// success automatic reaping stays on.
fn kernel_reports_exit_codes() -> bool {
    sys::reap_children_automatically(true);
    // SAFETY: the server is single-threaded; the child only calls _exit.
    let supported = match unsafe { sys::fork() } {
        Ok(ForkResult::Child) => sys::raw_exit(0),
        Ok(ForkResult::Parent(pid)) => sys::pidfd_open(pid)
            .ok()
            .map(|pidfd| {
                let _ = sys::poll_readable(&[pidfd.as_fd()], Some(std::time::Duration::from_secs(5)));
                sys::pidfd_exit_code(pidfd.as_fd()) == Some(0)
            })
            .unwrap_or(false),
        Err(_) => false,
    };
    if !supported {
        sys::reap_children_automatically(false);
    }
    supported
}

/// Forks a spare child; `None` if fork failed (requests then report the failure).
fn fork_spare(children: &mut Vec<Child>) -> Option<Spare> {
    let (ours, theirs) = sys::socketpair_cloexec(sys::SocketKind::SeqPacket).ok()?;
    // SAFETY: the server is single-threaded, so no lock can be held by another thread at fork.
    match unsafe { sys::fork() } {
        Ok(ForkResult::Child) => {
            // The server's descriptors are not the child's.
            drop(std::mem::take(children));
            drop(ours);
            sys::close_inherited_fd();
            // Children must not inherit the server's automatic reaping.
            sys::reap_children_automatically(false);
            run_spare(theirs)
        }
        Ok(ForkResult::Parent(pid)) => {
            drop(theirs);
            let pidfd = sys::pidfd_open(pid).ok()?;
            Some(Spare { pid, pidfd, orders: ours })
        }
        Err(_) => None,
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
        // The server went away (or sent nonsense): nothing to run.
        _ => sys::raw_exit(0),
    }
}

fn report_exit(child: Child) {
    let code = match sys::wait_pidfd(child.pidfd.as_fd(), true) {
        Ok(WaitOutcome::Exited(code)) => code,
        _ => super::children::EXITCODE_UNKNOWN,
    };
    let mut status = child.status;
    // The owner may have dropped its handle; a closed pipe is fine.
    let _ = status.write_all(&i64::from(code).to_le_bytes());
}

fn serve_request(
    control: &OwnedFd,
    request: Request,
    fds: Vec<OwnedFd>,
    children: &mut Vec<Child>,
    spare: &mut Option<Spare>,
    track: bool,
) {
    let mut fds = fds.into_iter();
    let (status, order, order_fds): (_, _, Vec<OwnedFd>) = match request {
        Request::Fork => {
            let launch = fds.next();
            (fds.next(), SpareOrder::ReadFrom, launch.into_iter().collect())
        }
        Request::ForkWith { packet } => (fds.next(), SpareOrder::Run { packet }, fds.collect()),
    };
    let Some(status) = status else {
        let _ = send_packet(control.as_fd(), &Reply::Failed { reason: "request without its descriptors".into() }, &[]);
        return;
    };
    let order_fds: Vec<BorrowedFd<'_>> = order_fds.iter().map(|fd| fd.as_fd()).collect();
    // Hand the order to the spare; if the spare died, fork another and try once more.
    for _attempt in 0..2 {
        let Some(chosen) = spare.take().or_else(|| fork_spare(children)) else { break };
        if send_packet(chosen.orders.as_fd(), &order, &order_fds).is_ok() {
            let _ = send_packet(control.as_fd(), &Reply::Forked { pid: chosen.pid }, &[chosen.pidfd.as_fd()]);
            if track {
                children.push(Child { pidfd: chosen.pidfd, status: std::fs::File::from(status) });
            }
            return;
        }
        let _ = sys::pidfd_signal(chosen.pidfd.as_fd(), sys::signals::SIGKILL);
        let _ = sys::wait_pidfd(chosen.pidfd.as_fd(), true);
    }
    let reason = format!("fork: {}", std::io::Error::last_os_error());
    let _ = send_packet(control.as_fd(), &Reply::Failed { reason }, &[]);
}
