//! The resource tracker: unlinks named segments whose creators all ended without unlinking them
//! (CPython's `resource_tracker`, without its attach-time registration, gh-82300).
//!
//! A named segment lives in `/dev/shm` until someone calls `shm_unlink`, so a creator killed with
//! `SIGKILL` would leave it behind for good. The tracker is a small process, started the first time
//! a process creates a tracked segment (a fresh execution of the program's executable, in the role
//! [`ROLE`]), that ignores `SIGINT`, `SIGTERM` and `SIGHUP`, and holds one `SOCK_SEQPACKET`
//! connection per **client**:
//!
//! ```text
//! client ── "R<name>" ──▶ tracker     register: this client holds <name>
//! client ── "U<name>" ──▶ tracker     unregister: the client unlinked it, or stopped tracking it
//! client ── "A<name>" + socket ──▶    hand over: a new client (the other end goes to another
//!                                     process inside a serialized `SharedMemory`) holding <name>
//! ```
//!
//! When a client's connection reaches end of file (its process ended, however it ended), the
//! tracker drops the client's holds; a name that nobody holds any more is unlinked, with a line on
//! standard error, as CPython's tracker warns about leaked objects. The tracker exits when its last
//! client is gone. Messages already in a connection are read before its end of file, so a
//! registration sent just before a `SIGKILL` still counts.
//!
//! Which segments are tracked: those a process **created** (unless it asked for no tracking), and
//! those it **received** as a value from a process that tracked them: the hand-over makes the
//! receiver a holder before the sender could end, so the segment outlives the sender while the
//! receiver uses it. A segment only **attached by name** is never tracked: a process that merely
//! looked at a segment never unlinks it (CPython before 3.13 did, gh-82300).
//!
//! Each process keeps one default connection, for the segments it creates: the connection it
//! received first (so children of one program share their parent's tracker), or a tracker of its
//! own. A forked child inherits its parent's connection. If the tracker was killed, the next
//! registration starts a new one and registers again every name the process still holds.

use std::collections::{HashMap, HashSet};
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{IoContext, Result};
use crate::sys::{self, SocketKind};

/// The role (in `__MULTIPROC_ROLE`) of a process started as a tracker.
pub(crate) const ROLE: &str = "shm-tracker";

/// The longest name a message may carry (`NAME_MAX`).
const MAX_NAME: usize = 255;

const REGISTER: u8 = b'R';
const UNREGISTER: u8 = b'U';
const HAND_OVER: u8 = b'A';

/// A connection to a tracker, shared by the handles that registered through it.
pub(crate) type Link = Arc<OwnedFd>;

/// This process's side: its default connection and the names registered through it.
#[derive(Debug, Default)]
struct Client {
    default: Option<Link>,
    names: HashSet<String>,
    /// Connections received with segments, kept open for the life of the process: closing one
    /// would drop its hold.
    adopted: Vec<Link>,
    tracker_pid: Option<i32>,
}

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

fn client() -> MutexGuard<'static, Option<Client>> {
    CLIENT.lock().unwrap_or_else(|p| p.into_inner())
}

fn send(link: BorrowedFd<'_>, command: u8, name: &str, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    sys::send_with_fds(link, &[IoSlice::new(&[command]), IoSlice::new(name.as_bytes())], fds)?;
    Ok(())
}

/// Starts a tracker process and returns the connection to it, and its pid.
fn start() -> Result<(Link, i32)> {
    let (ours, theirs) = sys::socketpair_cloexec(SocketKind::SeqPacket).context("create a socket for the resource tracker")?;
    let pid = sys::spawn_current_exe(crate::process::launch::ROLE_VAR, ROLE, theirs.as_fd())
        .context("start the shared-memory resource tracker")?;
    Ok((Arc::new(ours), pid))
}

/// Registers `name` (as passed to `shm_open`, with its `/`) as held by this process; returns the
/// link to unregister it through later.
pub(crate) fn register(name: &str) -> Result<()> {
    let mut guard = client();
    let client = guard.get_or_insert_with(Client::default);
    if let Some(link) = &client.default {
        if send(link.as_fd(), REGISTER, name, &[]).is_ok() {
            client.names.insert(name.to_owned());
            return Ok(());
        }
        // The tracker is gone: start another and give it every name this process holds.
        tracing::warn!("the shared-memory resource tracker died; starting a new one");
    }
    let (link, pid) = start()?;
    client.names.insert(name.to_owned());
    for held in &client.names {
        send(link.as_fd(), REGISTER, held, &[]).context("register shared memory with the resource tracker")?;
    }
    client.default = Some(link);
    client.tracker_pid = Some(pid);
    Ok(())
}

/// Ends this process's hold on `name`: through `link` if the hold came with a received segment,
/// else through the default connection.
pub(crate) fn unregister(name: &str, link: Option<&Link>) {
    match link {
        Some(link) => {
            let _ = send(link.as_fd(), UNREGISTER, name, &[]);
        }
        None => {
            let mut guard = client();
            let Some(client) = guard.as_mut() else { return };
            if client.names.remove(name) {
                if let Some(link) = &client.default {
                    let _ = send(link.as_fd(), UNREGISTER, name, &[]);
                }
            }
        }
    }
}

/// Makes a new connection to the tracker that holds `name`, for a process that will receive the
/// segment: the tracker counts the new holder before this call returns. `None` if this process
/// has no tracker to hand over to.
pub(crate) fn hand_over(name: &str, link: Option<&Link>) -> Option<OwnedFd> {
    let default = match link {
        Some(link) => Arc::clone(link),
        None => client().as_ref()?.default.clone()?,
    };
    let (theirs, tracker_end) = sys::socketpair_cloexec(SocketKind::SeqPacket).ok()?;
    send(default.as_fd(), HAND_OVER, name, &[tracker_end.as_fd()]).ok()?;
    Some(theirs)
}

/// Keeps a connection received with a segment for the life of the process; it becomes the default
/// connection if the process has none yet.
pub(crate) fn adopt(fd: OwnedFd) -> Link {
    let link = Arc::new(fd);
    let mut guard = client();
    let client = guard.get_or_insert_with(Client::default);
    client.adopted.push(Arc::clone(&link));
    if client.default.is_none() {
        client.default = Some(Arc::clone(&link));
    }
    link
}

/// The pid of the tracker this process started, if it started one (for tests).
pub fn tracker_pid() -> Option<i32> {
    client().as_ref()?.tracker_pid
}

/// The tracker's main loop, in a process started with [`ROLE`]. Never returns.
pub(crate) fn serve(first: OwnedFd) -> ! {
    sys::ignore_termination_signals();
    let mut tracker = Tracker::default();
    tracker.clients.push(Holder { link: first, names: HashSet::new() });
    while !tracker.clients.is_empty() {
        let ready = {
            let fds: Vec<BorrowedFd<'_>> = tracker.clients.iter().map(|c| c.link.as_fd()).collect();
            match sys::poll_readable(&fds, None) {
                Ok(ready) => ready,
                Err(e) => {
                    eprintln!("multiproc resource tracker: poll failed ({e}); cleaning up and exiting");
                    break;
                }
            }
        };
        for index in (0..ready.len()).rev() {
            if ready[index].ready {
                tracker.serve_client(index);
            }
        }
    }
    let all: Vec<usize> = (0..tracker.clients.len()).rev().collect();
    for index in all {
        tracker.drop_client(index);
    }
    std::process::exit(0)
}

#[derive(Debug)]
struct Holder {
    link: OwnedFd,
    names: HashSet<String>,
}

#[derive(Debug, Default)]
struct Tracker {
    clients: Vec<Holder>,
    /// How many clients hold each name.
    holds: HashMap<String, usize>,
}

impl Tracker {
    /// Reads every message waiting from client `index`; drops the client at end of file.
    fn serve_client(&mut self, index: usize) {
        let mut buf = [0u8; 1 + MAX_NAME];
        loop {
            let mut fds = Vec::new();
            match sys::try_recv_with_fds(self.clients[index].link.as_fd(), &mut buf, &mut fds) {
                Ok(None) => return,
                Ok(Some(0)) | Err(_) => return self.drop_client(index),
                Ok(Some(n)) => self.handle(index, &buf[..n], fds),
            }
        }
    }

    fn handle(&mut self, index: usize, message: &[u8], fds: Vec<OwnedFd>) {
        let Ok(name) = std::str::from_utf8(&message[1..]) else { return };
        match message[0] {
            REGISTER => self.hold(index, name),
            UNREGISTER => {
                if self.clients[index].names.remove(name) {
                    self.release(name, false);
                }
            }
            HAND_OVER => {
                if let Some(link) = fds.into_iter().next() {
                    self.clients.push(Holder { link, names: HashSet::new() });
                    self.hold(self.clients.len() - 1, name);
                }
            }
            _ => {}
        }
    }

    fn hold(&mut self, index: usize, name: &str) {
        if self.clients[index].names.insert(name.to_owned()) {
            *self.holds.entry(name.to_owned()).or_default() += 1;
        }
    }

    /// One hold on `name` less; at none, unlinks it if `unlink`.
    fn release(&mut self, name: &str, unlink: bool) {
        let Some(count) = self.holds.get_mut(name) else { return };
        *count -= 1;
        if *count > 0 {
            return;
        }
        self.holds.remove(name);
        if unlink {
            match sys::shm_unlink(name) {
                Ok(()) => eprintln!(
                    "multiproc resource tracker: unlinked shared memory {:?}, left behind by processes that ended without unlinking it",
                    name.trim_start_matches('/')
                ),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => eprintln!("multiproc resource tracker: could not unlink {name:?}: {e}"),
            }
        }
    }

    fn drop_client(&mut self, index: usize) {
        let holder = self.clients.swap_remove(index);
        for name in holder.names {
            self.release(&name, true);
        }
    }
}
