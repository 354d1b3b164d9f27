//! The resource tracker: unlinks named segments whose creators all ended without unlinking them
//! (CPython's `resource_tracker`, without its attach-time registration, gh-82300).
//!
//! A named segment lives in `/dev/shm` until someone calls `shm_unlink`, so a creator killed with
//! `SIGKILL` would leave it behind for good. The tracker is a small process, started the first time
//! a process creates a tracked segment (a fresh execution of the program's executable, in the role
//! [`ROLE`]), that ignores `SIGINT`, `SIGTERM` and `SIGHUP`, and holds one `SOCK_SEQPACKET`
//! connection per **client**. Each client also shares a **registration table** with the tracker:
//! a memory file of fixed slots, each empty or holding a name. Registering a segment is writing
//! its name into a free slot, unregistering is emptying the slot: no system call, no message, no
//! wake-up of the tracker (a creation costs what CPython's costs without its tracker message).
//! Messages remain for what the table cannot do:
//!
//! ```text
//! client ── "T" + memory file ──▶ tracker     the client's registration table (once)
//! client ── "R<name>" ──▶ tracker             register (when the table is full)
//! client ── "U<name>" ──▶ tracker             unregister a name registered by message
//! client ── "A<name>" + socket ──▶ tracker    hand over: a new client (the other end goes to
//!                                             another process inside a serialized
//!                                             `SharedMemory`) holding <name>; with no
//!                                             name, a new client holding nothing yet
//! ```
//!
//! When a client's connection reaches end of file (its process ended, however it ended), the
//! tracker reads what the client still held (its table and its registrations by message); a name
//! that no live client holds is unlinked, with a line on standard error, as CPython's tracker warns
//! about leaked objects. The tracker exits when its last client is gone. A name written into the
//! table, or a message sent, before a `SIGKILL` still counts: the table is shared memory, and
//! messages already in a connection are read before its end of file.
//!
//! Which segments are tracked: those a process **created** (unless it asked for no tracking), and
//! those it **received** as a value from a process that tracked them: the hand-over makes the
//! receiver a holder before the sender could end, so the segment outlives the sender while the
//! receiver uses it. A segment only **attached by name** is never tracked: a process that merely
//! looked at a segment never unlinks it (CPython before 3.13 did, gh-82300).
//!
//! Each process keeps one default connection, for the segments it creates: the connection it
//! received first (so children of one program share their parent's tracker), or a tracker of its
//! own. A forked child starts a client of its own (it keeps the inherited connection open, so what
//! its parent held stays held while the child lives). If someone kills the tracker, segments leak
//! as they would without one (CPython relaunches its tracker; this one is not relaunched).

use std::collections::{HashMap, HashSet};
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::atomic_bytes as bytes;
use crate::error::{IoContext, Result};
use crate::sys::{self, Mapping, SocketKind};

/// The role (in `__MULTIPROC_ROLE`) of a process started as a tracker.
pub(crate) const ROLE: &str = "shm-tracker";

/// The longest name a message or a slot may carry (`NAME_MAX`).
const MAX_NAME: usize = 254;

const TABLE: u8 = b'T';
const REGISTER: u8 = b'R';
const UNREGISTER: u8 = b'U';
const HAND_OVER: u8 = b'A';

/// A connection to a tracker, shared by the handles that registered through it.
pub(crate) type Link = Arc<OwnedFd>;

/// A registration table: `SLOTS` slots of `SLOT_BYTES` bytes, each `[state, len, name...]`
/// (state 1: holds a name). Pages the client never touches cost nothing.
#[derive(Debug)]
struct Table {
    mapping: Mapping,
    fd: OwnedFd,
}

const SLOTS: usize = 1024;
const SLOT_BYTES: usize = 256;
const TABLE_BYTES: usize = SLOTS * SLOT_BYTES;
const USED: u8 = 1;

impl Table {
    fn new() -> std::io::Result<Table> {
        let fd = sys::memfd_sealed("multiproc-shm-registrations", TABLE_BYTES)?;
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> std::io::Result<Table> {
        if sys::sealed_size(fd.as_fd())? != Some(TABLE_BYTES) {
            return Err(std::io::Error::other("not a registration table"));
        }
        let mapping = Mapping::new(fd.as_fd(), TABLE_BYTES)?;
        Ok(Table { mapping, fd })
    }

    fn slot(&self, index: usize) -> &[AtomicU8] {
        // SAFETY: the mapping holds TABLE_BYTES bytes (sealed size, checked in `map`) and lives as
        // long as `self`; every access goes through atomics, so the other process writing the
        // same bytes is no data race.
        let all = unsafe { std::slice::from_raw_parts(self.mapping.as_ptr().as_ptr().cast::<AtomicU8>(), TABLE_BYTES) };
        &all[index * SLOT_BYTES..(index + 1) * SLOT_BYTES]
    }

    fn write(&self, index: usize, name: &str) {
        let slot = self.slot(index);
        slot[1].store(name.len() as u8, Ordering::Relaxed);
        bytes::copy_in(&slot[2..2 + name.len()], name.as_bytes());
        slot[0].store(USED, Ordering::Release);
    }

    fn clear(&self, index: usize) {
        self.slot(index)[0].store(0, Ordering::Release);
    }

    /// The names the table holds.
    fn names(&self) -> Vec<String> {
        (0..SLOTS)
            .filter_map(|index| {
                let slot = self.slot(index);
                if slot[0].load(Ordering::Acquire) != USED {
                    return None;
                }
                let len = usize::from(slot[1].load(Ordering::Relaxed)).min(MAX_NAME);
                let mut name = vec![0; len];
                bytes::copy_out(&slot[2..2 + len], &mut name);
                String::from_utf8(name).ok()
            })
            .collect()
    }
}

/// This process's side: its default connection, its table, and where each name is registered.
#[derive(Debug, Default)]
struct Client {
    /// The value of [`FORKS`] when this state was made (a forked child starts its own).
    forks: u32,
    default: Option<Link>,
    table: Option<Table>,
    slots: HashMap<String, usize>,
    free: Vec<usize>,
    next_slot: usize,
    /// Names registered by message (the table was full).
    by_message: HashSet<String>,
    /// Connections received with segments (and, after a fork, the parent's), kept open for the
    /// life of the process: closing one would drop its holds.
    kept: Vec<Link>,
    tracker_pid: Option<i32>,
}

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

/// How many times this process's line of ancestors forked since the client state was made
/// (bumped in the child by a `pthread_atfork` handler): a forked child starts a client of its own.
static FORKS: AtomicU32 = AtomicU32::new(0);

extern "C" fn forked() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// How many forks separate this process from the one that first asked (changes in a forked
/// child), for per-process state that a child must not share with its parent.
pub(crate) fn fork_generation() -> u32 {
    static WATCH: std::sync::Once = std::sync::Once::new();
    WATCH.call_once(|| {
        if let Err(e) = sys::on_fork_child(forked) {
            tracing::warn!("cannot watch for fork ({e}); a forked child would share its parent's registrations");
        }
    });
    FORKS.load(Ordering::Relaxed)
}

/// Runs `f` on this process's client state, which is reset in a forked child (the child keeps the
/// inherited connections).
fn with_client<R>(f: impl FnOnce(&mut Client) -> R) -> R {
    let mut guard = CLIENT.lock().unwrap_or_else(|p| p.into_inner());
    let forks = fork_generation();
    if guard.as_ref().is_some_and(|c| c.forks != forks) {
        let inherited = guard.take().map(|c| c.kept.into_iter().chain(c.default).collect()).unwrap_or_default();
        *guard = Some(Client { forks, kept: inherited, ..Client::default() });
    }
    f(guard.get_or_insert_with(|| Client { forks, ..Client::default() }))
}

fn send(link: BorrowedFd<'_>, command: u8, name: &str, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    sys::send_with_fds(link, &[IoSlice::new(&[command]), IoSlice::new(name.as_bytes())], fds)?;
    Ok(())
}

impl Client {
    /// Makes `link` the default connection, with a registration table shared with the tracker.
    fn set_default(&mut self, link: Link) -> Result<()> {
        let table = Table::new().context("create the resource tracker's registration table")?;
        send(link.as_fd(), TABLE, "", &[table.fd.as_fd()])
            .context("send the registration table to the resource tracker")?;
        self.default = Some(link);
        self.table = Some(table);
        Ok(())
    }

    /// The default connection, starting a tracker if this process has none, or a new one if
    /// its tracker died (CPython relaunches its tracker too).
    fn ensure_default(&mut self) -> Result<Link> {
        if let Some(link) = &self.default {
            if !sys::peer_hung_up(link.as_fd()) {
                return Ok(Arc::clone(link));
            }
            tracing::warn!("the shared-memory resource tracker died; starting a new one");
            return self.replace_dead_tracker();
        }
        self.start_tracker()
    }

    /// Starts a new tracker and hands it every name the dead one held for this process.
    fn replace_dead_tracker(&mut self) -> Result<Link> {
        self.default = None;
        self.table = None;
        let link = self.start_tracker()?;
        if let Some(table) = &self.table {
            for (name, &slot) in &self.slots {
                table.write(slot, name);
            }
        }
        for name in &self.by_message {
            send(link.as_fd(), REGISTER, name, &[]).context("register shared memory with the resource tracker")?;
        }
        Ok(link)
    }

    /// Starts this process's tracker and makes it the default connection.
    fn start_tracker(&mut self) -> Result<Link> {
        let (ours, theirs) =
            sys::socketpair_cloexec(SocketKind::SeqPacket).context("create a socket for the resource tracker")?;
        let pid = sys::spawn_current_exe_ignoring_termination(crate::process::launch::ROLE_VAR, ROLE, theirs.as_fd())
            .context("start the shared-memory resource tracker")?;
        self.tracker_pid = Some(pid);
        let link = Arc::new(ours);
        self.set_default(Arc::clone(&link))?;
        Ok(link)
    }
}

/// Registers `name` (as passed to `shm_open`, with its `/`) as held by this process.
pub(crate) fn register(name: &str) -> Result<()> {
    if name.len() > MAX_NAME {
        return Err(crate::Error::InvalidState(format!("shared memory name too long to track: {name:?}")));
    }
    with_client(|client| {
        let link = client.ensure_default()?;
        if client.slots.contains_key(name) || client.by_message.contains(name) {
            return Ok(());
        }
        let slot = client.free.pop().or_else(|| (client.next_slot < SLOTS).then_some(client.next_slot));
        match (slot, &client.table) {
            (Some(slot), Some(table)) => {
                if slot == client.next_slot {
                    client.next_slot += 1;
                }
                table.write(slot, name);
                client.slots.insert(name.to_owned(), slot);
            }
            _ => {
                send(link.as_fd(), REGISTER, name, &[]).context("register shared memory with the resource tracker")?;
                client.by_message.insert(name.to_owned());
            }
        }
        Ok(())
    })
}

/// Ends this process's hold on `name`: through `link` if the hold came with a received segment,
/// else through the default connection's table.
pub(crate) fn unregister(name: &str, link: Option<&Link>) {
    if let Some(link) = link {
        let _ = send(link.as_fd(), UNREGISTER, name, &[]);
        return;
    }
    with_client(|client| {
        if let Some(slot) = client.slots.remove(name) {
            if let Some(table) = &client.table {
                table.clear(slot);
            }
            client.free.push(slot);
        } else if let (true, Some(link)) = (client.by_message.remove(name), &client.default) {
            let _ = send(link.as_fd(), UNREGISTER, name, &[]);
        }
    })
}

/// Makes a new connection to the tracker that holds `name`, for a process that will receive the
/// segment: the tracker counts the new holder before this call returns. `None` if this process
/// has no tracker to hand over to.
pub(crate) fn hand_over(name: &str, link: Option<&Link>) -> Option<OwnedFd> {
    let via = match link {
        Some(link) => Arc::clone(link),
        None => with_client(|client| client.default.clone())?,
    };
    let (theirs, tracker_end) = sys::socketpair_cloexec(SocketKind::SeqPacket).ok()?;
    send(via.as_fd(), HAND_OVER, name, &[tracker_end.as_fd()]).ok()?;
    Some(theirs)
}

/// A new connection to this process's tracker (starting one if the process has none) holding no
/// segment yet, for another process that will hold or create segments through it: a
/// [`SharedMemoryManager`](crate::manager::SharedMemoryManager)'s server, or a process it hands
/// a client to, so that all of them share one tracker (CPython bpo-36867).
pub(crate) fn new_client() -> Result<OwnedFd> {
    let via = with_client(Client::ensure_default)?;
    let (theirs, tracker_end) =
        sys::socketpair_cloexec(SocketKind::SeqPacket).context("create a socket for the resource tracker")?;
    send(via.as_fd(), HAND_OVER, "", &[tracker_end.as_fd()]).context("connect to the resource tracker")?;
    Ok(theirs)
}

/// Keeps a connection received with a segment for the life of the process; it becomes the default
/// connection if the process has none yet.
pub(crate) fn adopt(fd: OwnedFd) -> Link {
    let link = Arc::new(fd);
    with_client(|client| {
        client.kept.push(Arc::clone(&link));
        if client.default.is_none() && client.set_default(Arc::clone(&link)).is_err() {
            client.default = None;
        }
    });
    link
}

/// The pid of the tracker this process started, if it started one (for tests).
pub fn tracker_pid() -> Option<i32> {
    with_client(|client| client.tracker_pid)
}

/// The tracker's main loop, in a process started with [`ROLE`]. Never returns.
pub(crate) fn serve(first: OwnedFd) -> ! {
    sys::ignore_termination_signals();
    let mut tracker = Tracker::default();
    tracker.clients.push(Holder { link: first, names: HashSet::new(), table: None });
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
    while !tracker.clients.is_empty() {
        tracker.drop_client(tracker.clients.len() - 1);
    }
    std::process::exit(0)
}

#[derive(Debug)]
struct Holder {
    link: OwnedFd,
    /// Names registered by message or handed over.
    names: HashSet<String>,
    table: Option<Table>,
}

impl Holder {
    fn holds(&self, name: &str) -> bool {
        self.names.contains(name) || self.table.as_ref().is_some_and(|t| t.names().iter().any(|n| n == name))
    }
}

#[derive(Debug, Default)]
struct Tracker {
    clients: Vec<Holder>,
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
        let client = &mut self.clients[index];
        match message[0] {
            TABLE => {
                if let Some(fd) = fds.into_iter().next() {
                    client.table = Table::map(fd).ok();
                }
            }
            REGISTER => {
                client.names.insert(name.to_owned());
            }
            UNREGISTER => {
                client.names.remove(name);
            }
            HAND_OVER => {
                if let Some(link) = fds.into_iter().next() {
                    // No name: a client that holds nothing yet (`new_client`).
                    let names = if name.is_empty() { HashSet::new() } else { HashSet::from([name.to_owned()]) };
                    self.clients.push(Holder { link, names, table: None });
                }
            }
            _ => {}
        }
    }

    /// Forgets client `index`; unlinks what it held that no other client holds.
    fn drop_client(&mut self, index: usize) {
        let holder = self.clients.swap_remove(index);
        let mut held: HashSet<String> = holder.names;
        if let Some(table) = &holder.table {
            held.extend(table.names());
        }
        for name in held {
            if self.clients.iter().any(|c| c.holds(&name)) {
                continue;
            }
            match sys::shm_unlink(&name) {
                Ok(()) => eprintln!(
                    "multiproc resource tracker: unlinked shared memory {:?}, left behind by processes that ended without unlinking it",
                    name.trim_start_matches('/')
                ),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => eprintln!("multiproc resource tracker: could not unlink {name:?}: {e}"),
            }
        }
    }
}
