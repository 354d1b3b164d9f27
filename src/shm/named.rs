//! [`SharedMemory`]: a named segment in `/dev/shm`, the same object as CPython's
//! `multiprocessing.shared_memory.SharedMemory`.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::atomic_bytes as bytes;
use super::tracker::{self, Link};
use crate::Handle;
use crate::error::{Error, Result};
use crate::sys::{self, Mapping};

/// CPython's prefix for random names (`_SHM_NAME_PREFIX`, without its leading `/`).
const NAME_PREFIX: &str = "psm_";

/// Copies of at least this many bytes first fault in the pages they touch with one system call.
const PREFAULT_FROM: usize = 1 << 20;

/// Whether and through which connection this process's hold on a segment is tracked.
#[derive(Debug, Clone)]
enum Tracking {
    /// Not tracked: attached by name, or created with tracking off.
    Off,
    /// Created here: registered through this process's default tracker connection.
    Created,
    /// Received from a process that tracked it: held through the connection that came with it.
    Received(Link),
}

/// A block of shared memory with a name, that any process of the user can attach to, CPython's
/// (3.8+) included (Python's `multiprocessing.shared_memory.SharedMemory`).
///
/// Create one with a size ([`create`](Self::create), a random CPython-style name `psm_xxxxxxxx`;
/// [`create_named`](Self::create_named); [`options`](Self::options) for more), or
/// [`attach`](Self::attach) to an existing one by name. A `SharedMemory` is also a value: given to
/// a child as a [`Process`](crate::Process) argument (or sent through a
/// [`Connection`](crate::Connection)), it arrives mapped. Cloning shares this process's mapping.
///
/// # Lifetime
///
/// Dropping (or [`close`](Self::close)) unmaps the block in this process; the block itself stays
/// until someone calls [`unlink`](Self::unlink), as in CPython. What a program forgets to unlink
/// is cleaned up by the **resource tracker**: once every process that created the block, or
/// received it as a value, has ended (normally, by a panic, or by `SIGKILL`), the tracker unlinks
/// it and says so on standard error. A process that only [`attach`](Self::attach)ed by name never
/// causes an unlink (CPython did before 3.13, gh-82300). To keep a block after its creator ends,
/// for an unrelated process to attach later, create it with
/// [`track(false)`](CreateOptions::track) or call [`untrack`](Self::untrack).
///
/// # Access rules
///
/// Other processes may write the block at any moment, so this type never hands out a `&[u8]` or
/// `&mut [u8]` in safe code. The bytes are [`bytes`](Self::bytes), a `&[AtomicU8]`: every access is
/// atomic, and a race is never undefined behaviour. [`read_at`](Self::read_at) and
/// [`write_at`](Self::write_at) copy ranges in and out as fast as `memcpy`, in relaxed atomic
/// words; a copy that races with a writer may see part of the old and part of the new data, so
/// order readers and writers with a [`Lock`](crate::Lock), an [`Event`](crate::Event), a message or
/// a `join`. [`as_slice`](Self::as_slice) and [`as_mut_slice`](Self::as_mut_slice) give plain
/// slices, `unsafe`, for code that knows nobody writes meanwhile.
///
/// Another process could shrink the file (`ftruncate`); touching the mapping past the new end
/// then raises `SIGBUS`. Neither this crate nor CPython ever resizes a segment after creating it.
///
/// # With CPython
///
/// The block is the file `/dev/shm/<name>` (mode 0600), opened as CPython opens it (`shm_open` of
/// `/<name>`), so either side attaches to what the other created. Mind CPython's own tracker: a
/// Python process that attaches registers the block with it (before 3.13 always, since unless
/// `track=False`), and unlinks it when that Python program ends. A Python process that only uses a
/// block Rust owns should call `resource_tracker.unregister(shm._name, "shared_memory")` after
/// attaching (or pass `track=False` on 3.13+).
///
/// # Examples
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// use multiproc::SharedMemory;
///
/// let a = SharedMemory::create(16)?;
/// a.write_at(0, b"howdy")?;
/// let b = SharedMemory::attach(a.name())?;
/// assert_eq!(&b.to_vec()[..5], b"howdy");
/// b.close();
/// a.unlink()?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "shared_memory.SharedMemory")]
#[derive(Clone)]
pub struct SharedMemory {
    /// The name without the leading `/` (CPython's `.name`).
    name: String,
    size: usize,
    mapping: Arc<Mapping>,
    fd: Arc<OwnedFd>,
    tracking: Tracking,
}

/// How [`SharedMemory::options`] creates a block.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    name: Option<String>,
    track: bool,
}

impl CreateOptions {
    /// The block's name (CPython's `name=`); without one, a random `psm_xxxxxxxx`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Whether the resource tracker unlinks the block once its creators have all ended (CPython
    /// 3.13's `track=`); on by default.
    pub fn track(mut self, track: bool) -> Self {
        self.track = track;
        self
    }

    /// Creates the block: `size` bytes, zero-filled.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] for a size of 0 or a bad name; [`Error::SharedMemory`] if the name
    /// is taken (`AlreadyExists`) or the system refuses.
    pub fn create(self, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::InvalidState("'size' must be a positive number different from zero".into()));
        }
        let (name, fd) = match self.name {
            Some(name) => {
                let path = shm_path(&name)?;
                let fd = sys::shm_create(&path, size).map_err(|e| shm_error("create", &name, e))?;
                (path.trim_start_matches('/').to_owned(), fd)
            }
            None => create_random(size)?,
        };
        let tracking = if self.track { Tracking::Created } else { Tracking::Off };
        let shm = SharedMemory::map(name, fd, size, Tracking::Off)?;
        let registered = if self.track { register(&shm) } else { Ok(()) };
        if let Err(e) = registered {
            let _ = sys::shm_unlink(&shm.path());
            return Err(e);
        }
        Ok(SharedMemory { tracking, ..shm })
    }
}

/// Registers a block this process created with the resource tracker.
fn register(shm: &SharedMemory) -> Result<()> {
    tracker::register(&shm.path())
}

/// Four random bytes for a name, from a pool filled by one `getrandom` per 16 names; emptied in a
/// forked child, so that parent and child never draw the same bytes.
fn random_name_bytes() -> Result<[u8; 4]> {
    static POOL: Mutex<(u32, Vec<[u8; 4]>)> = Mutex::new((0, Vec::new()));
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let generation = tracker::fork_generation();
    if pool.0 != generation {
        *pool = (generation, Vec::new());
    }
    if pool.1.is_empty() {
        let fresh = sys::random_bytes::<64>().map_err(|e| Error::io("draw a random name", e))?;
        pool.1.extend(fresh.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
    }
    Ok(pool.1.pop().unwrap_or_default())
}

/// Creates a block under a fresh random name, retrying while the name is taken.
fn create_random(size: usize) -> Result<(String, OwnedFd)> {
    create_first_free(size, || {
        let random = random_name_bytes()?;
        Ok(format!("{NAME_PREFIX}{}", random.iter().map(|b| format!("{b:02x}")).collect::<String>()))
    })
}

/// Creates a block under the first name from `next_name` that is not taken (CPython retries on
/// `FileExistsError` the same way).
fn create_first_free(size: usize, mut next_name: impl FnMut() -> Result<String>) -> Result<(String, OwnedFd)> {
    loop {
        let name = next_name()?;
        match sys::shm_create(&format!("/{name}"), size) {
            Ok(fd) => return Ok((name, fd)),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(shm_error("create", &name, e)),
        }
    }
}

/// The name as `shm_open` gets it (CPython prepends one `/`), after checking it.
fn shm_path(name: &str) -> Result<String> {
    if name.is_empty() || name.contains('\0') || name.trim_start_matches('/').contains('/') {
        return Err(Error::InvalidState(format!(
            "bad shared memory name {name:?}: a name is 1 to 255 bytes, with no NUL and no '/' after a leading one"
        )));
    }
    Ok(if name.starts_with('/') { name.to_owned() } else { format!("/{name}") })
}

fn shm_error(action: &'static str, name: &str, e: rustix::io::Errno) -> Error {
    Error::SharedMemory { action, name: name.trim_start_matches('/').to_owned(), source: e.into() }
}

impl SharedMemory {
    /// Creates a block of `size` bytes (zero-filled) under a random name `psm_xxxxxxxx`, tracked
    /// (CPython `SharedMemory(create=True, size=size)`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] for a size of 0; [`Error::SharedMemory`] if the system refuses.
    pub fn create(size: usize) -> Result<SharedMemory> {
        Self::options().create(size)
    }

    /// Creates a block named `name` (CPython `SharedMemory(name, create=True, size=size)`).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create); the name taken gives [`Error::SharedMemory`] whose source is
    /// of kind `AlreadyExists` (CPython `FileExistsError`).
    pub fn create_named(name: &str, size: usize) -> Result<SharedMemory> {
        Self::options().name(name).create(size)
    }

    /// Options for creating a block: a name, tracking off.
    pub fn options() -> CreateOptions {
        CreateOptions { name: None, track: true }
    }

    /// Attaches to the existing block `name` (CPython `SharedMemory(name)`), mapping all of it.
    /// The block is not tracked by this process: its end never unlinks the block.
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`] with a source of kind `NotFound` if there is no such block (CPython
    /// `FileNotFoundError`); [`Error::InvalidState`] for a bad name.
    #[doc(alias = "SharedMemory(name)")]
    pub fn attach(name: &str) -> Result<SharedMemory> {
        let path = shm_path(name)?;
        let (fd, size) = sys::shm_attach(&path).map_err(|e| shm_error("attach to", name, e))?;
        Self::map(path.trim_start_matches('/').to_owned(), fd, size, Tracking::Off)
    }

    fn map(name: String, fd: OwnedFd, size: usize, tracking: Tracking) -> Result<SharedMemory> {
        let mapping = Mapping::new(fd.as_fd(), size).map_err(|e| shm_error("map", &name, e))?;
        Ok(SharedMemory { name, size, mapping: Arc::new(mapping), fd: Arc::new(fd), tracking })
    }

    fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// The block's name, without the leading `/` (CPython `.name`): give it to
    /// [`attach`](Self::attach) in another process, or to CPython's `SharedMemory(name)`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The block's size in bytes, as the system reports it (CPython `.size`).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this process's end may unlink the block through the resource tracker.
    pub fn is_tracked(&self) -> bool {
        !matches!(self.tracking, Tracking::Off)
    }

    /// The bytes of the block (CPython `.buf`), each an atomic: reading and writing them is safe
    /// while other processes do too (see the [access rules](Self#access-rules)).
    #[doc(alias = "buf")]
    pub fn bytes(&self) -> &[AtomicU8] {
        // SAFETY: the mapping holds `size` bytes and lives as long as `self`; `AtomicU8` has the
        // size and alignment of `u8` and every bit pattern is valid; all access through this
        // slice is atomic, so concurrent writers in other processes or threads are no data race.
        unsafe { std::slice::from_raw_parts(self.mapping.as_ptr().as_ptr().cast::<AtomicU8>(), self.size) }
    }

    /// Copies `data` into the block at byte `offset` (CPython `buf[offset:offset + len] = data`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit the block.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        let range = self.range(offset, data.len())?;
        if range.len() >= PREFAULT_FROM {
            sys::prefault(range, true);
        }
        bytes::copy_in(range, data);
        Ok(())
    }

    /// Copies bytes from the block, starting at `offset`, into all of `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit the block.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let range = self.range(offset, buf.len())?;
        if range.len() >= PREFAULT_FROM {
            sys::prefault(range, false);
        }
        bytes::copy_out(range, buf);
        Ok(())
    }

    /// A copy of the whole block (CPython `bytes(shm.buf)`).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.size];
        let _ = self.read_at(0, &mut out); // the whole block: always in range
        out
    }

    fn range(&self, offset: usize, len: usize) -> Result<&[AtomicU8]> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(&self.bytes()[offset..end]),
            _ => Err(Error::IndexOutOfRange { index: offset.saturating_add(len) as i64, len: self.size }),
        }
    }

    /// The start of the mapping, for code that shares it with C or with its own atomics.
    pub fn as_ptr(&self) -> *mut u8 {
        self.mapping.as_ptr().as_ptr()
    }

    /// The block as a plain byte slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody may write the block: no other process, no other thread, and
    /// not this one through [`bytes`](Self::bytes), [`write_at`](Self::write_at) or another
    /// mapping (a write would be a data race, undefined behaviour). Arrange it with a lock or a
    /// protocol (for example: readers start after the writer's child was joined).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping holds `size` initialised bytes and lives as long as `self`; the
        // caller promises no concurrent writes.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size) }
    }

    /// The block as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody else may read or write the block: no other process, no
    /// other thread, no other slice or view of this mapping or of another mapping of the block.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as `as_slice`; the caller promises exclusive access for the slice's life.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size) }
    }

    /// Stops tracking the block in this process: its end no longer leads to an unlink (CPython
    /// `resource_tracker.unregister(shm._name, "shared_memory")`).
    pub fn untrack(&mut self) {
        self.end_tracking();
        self.tracking = Tracking::Off;
    }

    fn end_tracking(&self) {
        match &self.tracking {
            Tracking::Off => {}
            Tracking::Created => tracker::unregister(&self.path(), None),
            Tracking::Received(link) => tracker::unregister(&self.path(), Some(link)),
        }
    }

    /// Removes the block's name (CPython `unlink()`): no process can attach any more; the memory
    /// goes once every mapping is gone. Call it once, from one process.
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`] with a source of kind `NotFound` if the block was already unlinked
    /// (CPython `FileNotFoundError`).
    pub fn unlink(&self) -> Result<()> {
        sys::shm_unlink(&self.path()).map_err(|e| shm_error("unlink", &self.name, e))?;
        self.end_tracking();
        Ok(())
    }

    /// Unmaps the block in this process (CPython `close()`) once every clone of this handle is
    /// closed or dropped; the same as dropping it.
    pub fn close(self) {}
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedMemory('{}', size={})", self.name, self.size)
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    name: &'a str,
    #[serde(serialize_with = "crate::handle::serialize")]
    fd: &'a OwnedFd,
    tracker: Option<Handle<OwnedFd>>,
}

#[derive(Deserialize)]
struct WireIn {
    name: String,
    #[serde(deserialize_with = "crate::handle::deserialize")]
    fd: OwnedFd,
    tracker: Option<Handle<OwnedFd>>,
}

/// A `SharedMemory` travels as its descriptor and name: the receiver maps the very same memory
/// (even if the name was unlinked meanwhile). If this process tracks the block, the receiver
/// becomes a holder too, before the sender can end (see the resource tracker).
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let tracker = match &self.tracking {
            Tracking::Off => None,
            Tracking::Created => tracker::hand_over(&self.path(), None),
            Tracking::Received(link) => tracker::hand_over(&self.path(), Some(link)),
        };
        WireOut { name: &self.name, fd: &self.fd, tracker: tracker.map(Handle::new) }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let wire = WireIn::deserialize(deserializer)?;
        let size =
            sys::segment_size(wire.fd.as_fd()).map_err(|e| D::Error::custom(shm_error("inspect", &wire.name, e)))?;
        let tracking = match wire.tracker {
            Some(link) => Tracking::Received(tracker::adopt(link.into_inner())),
            None => Tracking::Off,
        };
        SharedMemory::map(wire.name, wire.fd, size, tracking).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHM-05: a name that is already taken is skipped, and the taken block is left as it was.
    #[test]
    fn a_taken_random_name_is_skipped() {
        let taken = format!("psm_test_taken_{}", std::process::id());
        let fresh = format!("psm_test_fresh_{}", std::process::id());
        let existing = sys::shm_create(&format!("/{taken}"), 4096).unwrap();
        let mut names = [taken.clone(), fresh.clone()].into_iter();
        let (name, _fd) = create_first_free(8192, || Ok(names.next().unwrap())).unwrap();
        assert_eq!(name, fresh);
        assert_eq!(names.next(), None, "one retry, no more");
        let (_, size) = sys::shm_attach(&format!("/{taken}")).unwrap();
        assert_eq!(size, 4096, "the taken block keeps its size");
        drop(existing);
        sys::shm_unlink(&format!("/{taken}")).unwrap();
        sys::shm_unlink(&format!("/{fresh}")).unwrap();
    }

    #[test]
    fn a_failing_name_source_ends_the_retries() {
        let failure = || Err(Error::InvalidState("no more names".into()));
        assert!(matches!(create_first_free(4096, failure), Err(Error::InvalidState(_))));
    }
}
