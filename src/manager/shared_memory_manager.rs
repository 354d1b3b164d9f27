//! [`SharedMemoryManager`] (CPython `multiprocessing.managers.SharedMemoryManager`): named shared
//! memory blocks created through a manager, which unlinks them all when it stops.
//!
//! The blocks are made **in the calling process** ([`SharedMemory::create`],
//! [`ShareableList::new`]), then their names go to the manager's server, which owns them from then
//! on (CPython's `track_segment`); the server unlinks every block it holds when it stops.
//!
//! How the blocks and the resource tracker get along: see [`SharedMemoryManager`].

use std::fmt;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::ManagerClient;
use super::owner::{BaseManager, fresh_address};
use super::protocol::{Failure, Request};
use super::proxy::Endpoint;
use super::server::run_shared_memory_server;
use crate::connection::Address;
use crate::error::Result;
use crate::shm::{Item, tracker};
use crate::{Handle, Process, ShareableList, SharedMemory, current_process, pipe};

/// A manager whose server owns named shared memory blocks and unlinks them all when it stops
/// (CPython `SharedMemoryManager`).
///
/// [`shared_memory`](SharedMemoryClient::shared_memory) and
/// [`shareable_list`](SharedMemoryClient::shareable_list) create blocks in the calling process and
/// hand them to the server. The manager dereferences to a [`SharedMemoryClient`], which can also be
/// given to other processes (as a [`Process`] argument) to create blocks there.
///
/// The server stops at [`shutdown`](Self::shutdown) or when the manager is dropped (CPython's
/// `with SharedMemoryManager() as smm:`), unlinking every block, and it never outlives the process
/// that started it, nor do the blocks: if that process is killed (`SIGKILL` included), the server
/// ends with it and the resource tracker unlinks the blocks.
///
/// # Blocks and the resource tracker
///
/// The server holds its blocks with the owner's resource tracker (it receives a connection to it
/// when it starts, so one tracker serves the program, as in CPython since bpo-36867), and the
/// creating process stops tracking a block once the server has it ([`SharedMemory::is_tracked`] is
/// false on what the manager returns). So:
///
/// * a block lives as long as the manager's server, whichever process created it: a worker that
///   created a block through the manager and ended does not take the block with it;
/// * at [`shutdown`](SharedMemoryManager::shutdown) (or drop) the server unlinks every block, then
///   ends;
/// * when the server is killed, the resource tracker unlinks its blocks as soon as the server is
///   gone (and says so on standard error, as for any block a killed process left behind). This is
///   also what happens when the owner is killed: the server, a daemon child, is killed with it (a
///   server started by a daemon process, which cannot have daemon children, notices its owner's
///   end, unlinks its blocks itself and ends);
/// * a block is unlinked once: the tracker's entries are removed with each unlink, and a block
///   someone already unlinked is skipped quietly.
///
/// Until the server has a block, the creating process tracks it, so a creator killed in between
/// leaves nothing behind either.
///
/// # Examples
///
/// Seed 003: `ShareableList(range(2000))` worked on by two processes, one half each.
///
/// ```no_run
/// use multiproc::manager::SharedMemoryManager;
/// use multiproc::shm::Item;
/// use multiproc::{Process, ShareableList};
///
/// /// Sums `sl[start..end]` into `sl[start]`, leaving zeros behind it.
/// fn do_work(sl: ShareableList, start: usize, end: usize) -> multiproc::Result<()> {
///     let mut sum = 0;
///     for i in start..end {
///         if let Item::Int(x) = sl.get(i as isize)? {
///             sum += x;
///         }
///         sl.set(i as isize, 0)?;
///     }
///     sl.set(start as isize, sum)
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let smm = SharedMemoryManager::start()?;
/// let sl = smm.shareable_list(0..2000)?;
/// let mut p1 = Process::new(do_work, (sl.clone(), 0, 1000));
/// let mut p2 = Process::new(do_work, (sl.clone(), 1000, 2000));
/// p1.start()?;
/// p2.start()?;
/// p1.join()?;
/// p2.join()?;
/// let total: i64 = sl.to_vec()?.iter().map(|item| if let Item::Int(x) = item { *x } else { 0 }).sum();
/// assert_eq!(total, 1_999_000);
/// drop(smm); // unlinks the list's block
/// # Ok(())
/// # }
/// ```
#[doc(alias = "managers.SharedMemoryManager")]
pub struct SharedMemoryManager {
    manager: BaseManager<()>,
    client: SharedMemoryClient,
}

impl fmt::Debug for SharedMemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemoryManager")
            .field("address", self.manager.address())
            .field("server_pid", &self.manager.server_pid())
            .finish()
    }
}

impl SharedMemoryManager {
    /// Starts the server process (CPython `SharedMemoryManager()`, `smm.start()`), listening on a
    /// fresh abstract Unix socket with this process's authkey.
    ///
    /// # Errors
    ///
    /// The server or the resource tracker could not be started.
    pub fn start() -> Result<SharedMemoryManager> {
        Self::start_at(fresh_address()?, current_process().authkey())
    }

    /// Starts the server process listening at `address` with `authkey` (CPython
    /// `SharedMemoryManager(address, authkey)`); other processes on this machine reach it with
    /// [`SharedMemoryClient::connect`].
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); the address in use.
    pub fn start_at(address: Address, authkey: &[u8]) -> Result<SharedMemoryManager> {
        // The server shares this process's tracker, started now if need be (bpo-36867).
        let tracker = tracker::new_client()?;
        let (ours, theirs) = pipe()?;
        let server = Process::new(run_shared_memory_server, (address, authkey.to_vec(), theirs, Handle::new(tracker)));
        let manager = BaseManager::<()>::launch(server, ours, authkey)?;
        let client = SharedMemoryClient::new(manager.endpoint.clone());
        Ok(SharedMemoryManager { manager, client })
    }

    /// The server's process id.
    pub fn server_pid(&self) -> Option<i32> {
        self.manager.server_pid()
    }

    /// Unlinks every block the manager holds, stops the server and waits for it (CPython
    /// `shutdown()`). Creating blocks fails from then on. In a child forked with the manager,
    /// this (and dropping the manager) leaves the server alone.
    pub fn shutdown(&mut self) -> Result<()> {
        self.manager.shutdown()
    }

    /// The server's exit code after [`shutdown`](Self::shutdown): 0 when it stopped as asked.
    pub fn server_exitcode(&self) -> Option<i32> {
        self.manager.server_exitcode()
    }
}

impl Deref for SharedMemoryManager {
    type Target = SharedMemoryClient;

    fn deref(&self) -> &SharedMemoryClient {
        &self.client
    }
}

/// A client of a [`SharedMemoryManager`]'s server: creates blocks that the server owns.
///
/// The manager dereferences to one, [`try_clone`](SharedMemoryClient::try_clone) makes another, and
/// it travels to other processes as a value (a [`Process`] argument): the receiver creates blocks
/// in the same manager, and shares the sender's resource tracker.
pub struct SharedMemoryClient {
    client: ManagerClient,
}

impl fmt::Debug for SharedMemoryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemoryClient").field("address", self.client.address()).finish()
    }
}

impl SharedMemoryClient {
    fn new(endpoint: Endpoint) -> SharedMemoryClient {
        SharedMemoryClient { client: ManagerClient::new(endpoint) }
    }

    /// A client of the shared memory manager at `address` (CPython
    /// `SharedMemoryManager(address, authkey).connect()`); checks now that it answers. The blocks
    /// are files in this machine's `/dev/shm`: a client on another machine could not use them.
    ///
    /// # Errors
    ///
    /// Nobody listening; [`Error::Authentication`](crate::Error::Authentication) for a wrong key;
    /// [`Error::Remote`](crate::Error::Remote) if the server is not a shared memory manager's.
    pub fn connect(address: Address, authkey: Option<&[u8]>) -> Result<SharedMemoryClient> {
        let client = SharedMemoryClient::new(Endpoint::new(address, authkey.map(<[u8]>::to_vec)));
        client.segments()?;
        Ok(client)
    }

    /// Another client of the same manager (its own connection).
    pub fn try_clone(&self) -> SharedMemoryClient {
        SharedMemoryClient::new(self.client.endpoint.clone())
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        self.client.address()
    }

    /// A new block of `size` zero bytes, with a random name, owned by the manager (CPython
    /// `smm.SharedMemory(size)`). Other processes attach to it by name, or receive it as a value.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create`]; the manager stopped or unreachable (the block is unlinked
    /// again then).
    #[doc(alias = "SharedMemory")]
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        let mut shm = SharedMemory::create(size)?;
        self.track(&mut shm)?;
        Ok(shm)
    }

    /// A new [`ShareableList`] holding `items`, owned by the manager (CPython
    /// `smm.ShareableList(sequence)`).
    ///
    /// # Errors
    ///
    /// As [`ShareableList::new`]; the manager stopped or unreachable (the block is unlinked again
    /// then).
    #[doc(alias = "ShareableList")]
    pub fn shareable_list<I: Into<Item>>(&self, items: impl IntoIterator<Item = I>) -> Result<ShareableList> {
        let mut list = ShareableList::new(items)?;
        self.track(list.shm_mut())?;
        Ok(list)
    }

    /// Hands the block `shm` over to the manager (CPython `track_segment`): the server unlinks
    /// it when it stops, and this process stops tracking it.
    ///
    /// # Errors
    ///
    /// The manager stopped or unreachable: the block is unlinked then (it was meant to go with
    /// the manager), and the error returned.
    #[doc(alias = "track_segment")]
    pub fn track(&self, shm: &mut SharedMemory) -> Result<()> {
        if let Err(e) = self.client.control::<()>(&Request::TrackSegment(shm.name().to_owned())) {
            let _ = shm.unlink();
            return Err(e);
        }
        shm.untrack();
        Ok(())
    }

    /// Unlinks the block `name` now and forgets it (CPython `release_segment`).
    ///
    /// # Errors
    ///
    /// [`Error::Remote`](crate::Error::Remote) if the manager holds no block of that name.
    #[doc(alias = "release_segment")]
    pub fn release(&self, name: &str) -> Result<()> {
        self.client.control(&Request::ReleaseSegment(name.to_owned()))
    }

    /// The names of the blocks the manager holds, oldest first (CPython `list_segments`).
    #[doc(alias = "list_segments")]
    pub fn segments(&self) -> Result<Vec<String>> {
        self.client.control(&Request::ListSegments)
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    endpoint: &'a Endpoint,
    tracker: Option<Handle<OwnedFd>>,
}

#[derive(Deserialize)]
struct WireIn {
    endpoint: Endpoint,
    tracker: Option<Handle<OwnedFd>>,
}

/// A client travels as the server's address and key, with a connection to the sender's resource
/// tracker: the receiver creates its blocks under the same tracker.
impl Serialize for SharedMemoryClient {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let tracker = tracker::new_client().ok().map(Handle::new);
        WireOut { endpoint: &self.client.endpoint, tracker }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemoryClient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let wire = WireIn::deserialize(deserializer)?;
        if let Some(link) = wire.tracker {
            tracker::adopt(link.into_inner());
        }
        Ok(SharedMemoryClient::new(wire.endpoint))
    }
}

/// The blocks a shared memory manager's server holds (CPython `_SharedMemoryTracker`).
#[derive(Debug, Default)]
pub(crate) struct Segments {
    state: Mutex<SegmentState>,
}

#[derive(Debug, Default)]
struct SegmentState {
    /// Oldest first.
    names: Vec<String>,
    /// Set once the blocks were released at the server's end: later blocks are refused.
    closed: bool,
}

impl Segments {
    fn state(&self) -> MutexGuard<'_, SegmentState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes block `name` over: registered with this process's resource tracker, unlinked at the
    /// end.
    pub(crate) fn track(&self, name: String) -> std::result::Result<(), Failure> {
        if name.is_empty() || name.contains(['/', '\0']) {
            return Err(Failure::Remote(format!("ValueError: bad shared memory name {name:?}")));
        }
        let mut state = self.state();
        if state.closed {
            return Err(Failure::Remote("the shared memory manager is shutting down".into()));
        }
        if !state.names.contains(&name) {
            tracker::register(&format!("/{name}")).map_err(|e| Failure::Remote(e.to_string()))?;
            state.names.push(name);
        }
        Ok(())
    }

    /// Unlinks block `name` and forgets it.
    pub(crate) fn release(&self, name: &str) -> std::result::Result<(), Failure> {
        let mut state = self.state();
        let Some(index) = state.names.iter().position(|n| n == name) else {
            return Err(Failure::Remote(format!("ValueError: the manager holds no block named {name:?}")));
        };
        state.names.remove(index);
        unlink(name);
        Ok(())
    }

    /// The names held, oldest first.
    pub(crate) fn names(&self) -> Vec<String> {
        self.state().names.clone()
    }

    /// Unlinks every block and refuses new ones (the server's end).
    pub(crate) fn release_all(&self) {
        let mut state = self.state();
        state.closed = true;
        for name in std::mem::take(&mut state.names) {
            unlink(&name);
        }
    }
}

/// Unlinks a block the server held and drops its registration; a block already unlinked by
/// someone else is no error.
fn unlink(name: &str) {
    let path = format!("/{name}");
    if let Err(e) = crate::sys::shm_unlink(&path)
        && e != rustix::io::Errno::NOENT
    {
        eprintln!("multiproc: the shared memory manager could not unlink {name:?}: {e}");
    }
    tracker::unregister(&path, None);
}
