//! The launch packet: what a spawned or fork-server child receives on its launch socket before it
//! runs anything.
//!
//! # Protocol
//!
//! ```text
//! parent                                   child (fd 3 = launch socket)
//!   frame: LaunchPacket, fds [alive, payload fds...]  ───►
//!                                          check executable identity and version
//!   ◄─── frame: Ack (spawn only): Ok, or the refusal
//!                                          run the target, exit with its code
//! ```
//!
//! Frames are those of `crate::frame` (4-byte big-endian length, descriptors as `SCM_RIGHTS`).
//! The payload's descriptor indices count from the second descriptor: the first is the read end of
//! the parent's liveness pipe.

use std::os::fd::{BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::identity::{ParentDescription, SelfDescription};
use super::target::Job;
use crate::connection::frame;
use crate::error::{Error, Result};
use crate::reduction::{self, Message};
use crate::sys::{self, ExeIdentity};

/// The environment variable that tells a fresh execution of the binary what it is.
pub(crate) const ROLE_VAR: &str = "__MULTIPROC_ROLE";
/// [`ROLE_VAR`]'s value for a spawned child.
pub(crate) const ROLE_CHILD: &str = "child";
/// [`ROLE_VAR`]'s value for the fork server.
pub(crate) const ROLE_FORKSERVER: &str = "forkserver";
/// [`ROLE_VAR`]'s value for a fork server that reports exit codes on status pipes even where the
/// kernel could (see `test_hooks::force_status_pipes`).
pub(crate) const ROLE_FORKSERVER_PIPES: &str = "forkserver-pipes";

/// The crate version, which parent and child must share (the launch format may change with it).
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Launch packets larger than this are refused as corrupt (arguments live in `payload`).
const MAX_PACKET: usize = 1 << 31;

#[derive(Debug, Serialize, Deserialize)]
struct LaunchPacket {
    version: String,
    exe: ExeIdentity,
    entry_offset: i64,
    target_name: String,
    me: SelfDescription,
    parent: ParentDescription,
    payload: Vec<u8>,
}

/// The acknowledgement a spawned child sends once it has checked the packet.
#[derive(Debug, Serialize, Deserialize)]
enum Ack {
    Ok,
    Refused { parent: String, child: String },
}

/// What the child needs to run, once the packet is checked.
pub(crate) struct Launched {
    pub(crate) entry_offset: i64,
    pub(crate) me: SelfDescription,
    pub(crate) parent: ParentDescription,
    pub(crate) alive: Option<OwnedFd>,
    pub(crate) payload: Message,
}

/// The executable identity of this process, read once.
pub(crate) fn own_exe() -> Result<ExeIdentity> {
    static EXE: std::sync::OnceLock<std::result::Result<ExeIdentity, i32>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| sys::exe_identity().map_err(|e| e.raw_os_error()))
        .map_err(|errno| Error::io("identify the running executable", std::io::Error::from_raw_os_error(errno)))
}

/// Parent side: sends the launch packet for `job` on `socket`.
pub(crate) fn send_packet(socket: BorrowedFd<'_>, job: Job, me: SelfDescription, alive: OwnedFd) -> Result<()> {
    frame::send(socket, &encode_packet(job, me, alive)?)
}

/// The launch packet for `job` as a message: its bytes, and the descriptors `[alive, payload...]`.
pub(crate) fn encode_packet(job: Job, me: SelfDescription, alive: OwnedFd) -> Result<Message> {
    let me_now = super::identity::me();
    let packet = LaunchPacket {
        version: VERSION.to_string(),
        exe: test_hooks::exe_for_packet(own_exe()?),
        entry_offset: super::target::entry_offset(job.entry),
        target_name: job.name.to_string(),
        me,
        parent: ParentDescription { pid: std::process::id() as i32, name: me_now.name },
        payload: job.payload.bytes,
    };
    let mut message = reduction::encode(&packet)?;
    message.fds.push(alive);
    message.fds.extend(job.payload.fds);
    Ok(message)
}

/// Parent side (spawn): waits for the child's acknowledgement.
pub(crate) fn recv_ack(socket: BorrowedFd<'_>) -> Result<()> {
    match frame::recv(socket, 64 * 1024)? {
        Some(message) => match reduction::decode::<Ack>(message)? {
            Ack::Ok => Ok(()),
            Ack::Refused { parent, child } => Err(Error::BinaryMismatch { parent, child }),
        },
        None => Err(Error::InvalidState(
            "the spawned child exited before it acknowledged its launch; see its standard error".into(),
        )),
    }
}

/// Child side: receives and checks the packet. On a mismatch, tells the parent (if `ack`) and
/// returns the error.
pub(crate) fn recv_packet(socket: BorrowedFd<'_>, ack: bool) -> Result<Launched> {
    let Some(message) = frame::recv(socket, MAX_PACKET)? else {
        return Err(Error::InvalidState("the parent closed the launch socket before sending the launch packet".into()));
    };
    check_packet(message, ack.then_some(socket))
}

/// Child side: checks a packet received by any route. With `ack`, answers on that socket.
pub(crate) fn check_packet(mut message: Message, ack: Option<BorrowedFd<'_>>) -> Result<Launched> {
    let extra_fds = std::mem::take(&mut message.fds);
    let packet: LaunchPacket = reduction::decode(message)?;
    let mine = own_exe()?;
    if packet.exe != mine || packet.version != VERSION {
        let parent = format!("{} (multiproc {})", packet.exe, packet.version);
        let child = format!("{mine} (multiproc {VERSION})");
        if let Some(socket) = ack {
            let _ = frame::send(
                socket,
                &reduction::encode(&Ack::Refused { parent: parent.clone(), child: child.clone() })?,
            );
        }
        return Err(Error::BinaryMismatch { parent, child });
    }
    if let Some(socket) = ack {
        frame::send(socket, &reduction::encode(&Ack::Ok)?)?;
    }
    let mut fds = extra_fds.into_iter();
    let alive = fds.next();
    Ok(Launched {
        entry_offset: packet.entry_offset,
        me: packet.me,
        parent: packet.parent,
        alive,
        payload: Message { bytes: packet.payload, fds: fds.collect() },
    })
}

/// Hooks that let the test suite provoke failures that cannot happen by accident.
#[doc(hidden)]
pub mod test_hooks {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::sys::ExeIdentity;

    static FAKE_EXE_MISMATCH: AtomicBool = AtomicBool::new(false);
    static FORCE_STATUS_PIPES: AtomicBool = AtomicBool::new(false);

    /// Makes fork servers started from now on report exit codes on status pipes, as on kernels
    /// older than 6.15 (which cannot keep exit codes for pidfd holders).
    pub fn force_status_pipes(on: bool) {
        FORCE_STATUS_PIPES.store(on, Ordering::SeqCst);
    }

    pub(crate) fn fork_server_role() -> &'static str {
        if FORCE_STATUS_PIPES.load(Ordering::SeqCst) { super::ROLE_FORKSERVER_PIPES } else { super::ROLE_FORKSERVER }
    }

    /// Makes the next launch packets claim a different executable, so that children refuse them.
    pub fn simulate_binary_mismatch(on: bool) {
        FAKE_EXE_MISMATCH.store(on, Ordering::SeqCst);
    }

    pub(super) fn exe_for_packet(real: ExeIdentity) -> ExeIdentity {
        if FAKE_EXE_MISMATCH.load(Ordering::SeqCst) { real.altered() } else { real }
    }
}
