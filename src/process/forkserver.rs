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
//! owner → server   Request::Fork           + fds [launch socket, status pipe write end]
//! server → owner   Reply::Forked { pid }   + fds [pidfd of the child]
//!                | Reply::Failed { reason }
//! server → status pipe   exit code as 8 little-endian bytes, then close   when the child ends
//! ```
//!
//! The child closes every descriptor but the launch socket (moved to descriptor 3) and continues
//! exactly as a spawned child does: it reads its launch packet and runs its target.
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
    /// Fork a child.
    Fork,
}

/// The server's answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Forked { pid: i32 },
    Failed { reason: String },
}

/// The largest control packet.
pub(crate) const MAX_PACKET: usize = 4096;

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
    let mut buf = [0u8; MAX_PACKET];
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

/// Runs the server on `control` until its owner goes away. Never returns.
pub(crate) fn serve(control: OwnedFd) -> ! {
    let hello = match super::launch::own_exe() {
        Ok(exe) => Hello { version: env!("CARGO_PKG_VERSION").into(), exe, pid: std::process::id() as i32 },
        Err(e) => bootstrap::die(&format!("multiproc fork server: {e}")),
    };
    if send_packet(control.as_fd(), &hello, &[]).is_err() {
        sys::raw_exit(0);
    }
    let mut children: Vec<Child> = Vec::new();
    loop {
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
                Ok(Some((Request::Fork, fds))) => serve_request(&control, fds, &mut children),
                // End of file or a broken socket: the owner is gone.
                Ok(None) | Err(_) => sys::raw_exit(0),
            }
        }
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

fn serve_request(control: &OwnedFd, fds: Vec<OwnedFd>, children: &mut Vec<Child>) {
    let mut fds = fds.into_iter();
    let (Some(launch), Some(status)) = (fds.next(), fds.next()) else {
        let _ = send_packet(control.as_fd(), &Reply::Failed { reason: "request without its descriptors".into() }, &[]);
        return;
    };
    // SAFETY: the server is single-threaded, so no lock can be held by another thread at fork.
    match unsafe { sys::fork() } {
        Ok(ForkResult::Child) => run_child(launch),
        Ok(ForkResult::Parent(pid)) => {
            drop(launch);
            match sys::pidfd_open(pid) {
                Ok(pidfd) => {
                    let _ = send_packet(control.as_fd(), &Reply::Forked { pid }, &[pidfd.as_fd()]);
                    children.push(Child { pidfd, status: std::fs::File::from(status) });
                }
                Err(e) => {
                    let _ = send_packet(control.as_fd(), &Reply::Failed { reason: format!("pidfd_open: {e}") }, &[]);
                }
            }
        }
        Err(e) => {
            let _ = send_packet(control.as_fd(), &Reply::Failed { reason: format!("fork: {e}") }, &[]);
        }
    }
}

fn run_child(launch: OwnedFd) -> ! {
    let launch = match sys::keep_only_inherited(launch) {
        Ok(fd) => fd,
        Err(e) => bootstrap::die(&format!("multiproc: a fork-server child could not tidy its descriptors: {e}")),
    };
    bootstrap::run_launched_child(launch, StartMethod::ForkServer, false)
}
