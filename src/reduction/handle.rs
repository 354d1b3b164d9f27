//! [`Handle`]: a file-descriptor holder that travels to other processes.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The serde newtype name under which a descriptor's index is encoded.
pub(crate) const FD_NEWTYPE_NAME: &str = "multiproc::Fd";

/// Wraps anything that owns a file descriptor (`File`, `TcpStream`, `UnixStream`, `OwnedFd`, ...)
/// so that it can be given to a child process as an argument, or sent through a connection or a
/// queue, and arrive open and usable on the other side.
///
/// The receiving process gets its own descriptor for the same open file description (as `dup(2)`
/// gives): file offsets and socket state are shared, closing one side does not close the other.
///
/// Python: CPython pickles sockets and connections with `multiprocessing.reduction` (`DupFd`,
/// `send_handle`/`recv_handle`).
///
/// # Examples
///
/// ```no_run
/// use std::io::Write;
/// use multiproc::{Handle, Process};
///
/// fn write_line(mut file: Handle<std::fs::File>) {
///     writeln!(file, "written by the child").unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let file = std::fs::File::create("/tmp/multiproc-handle-doc.txt").unwrap();
/// let mut child = Process::new(write_line, (Handle::new(file),));
/// child.start()?;
/// child.join()?;
/// # Ok(())
/// # }
/// ```
///
/// A field of your own type can travel the same way with `#[serde(with = "multiproc::handle")]`.
#[doc(alias = "send_handle")]
#[doc(alias = "recv_handle")]
#[doc(alias = "DupFd")]
pub struct Handle<T>(T);

impl<T> Handle<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Handle(inner)
    }

    /// Unwraps the inner value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Handle<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Handle<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.0).finish()
    }
}

impl<T> From<T> for Handle<T> {
    fn from(inner: T) -> Self {
        Handle(inner)
    }
}

impl<T: AsFd> AsFd for Handle<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl<T: AsFd> Serialize for Handle<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}

impl<'de, T: From<OwnedFd>> Deserialize<'de> for Handle<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(Handle)
    }
}

/// Serializes any descriptor holder; use as `#[serde(with = "multiproc::handle")]` on a field.
///
/// # Errors
///
/// Fails outside multiproc's own encoding (for example with `serde_json`), where a descriptor
/// number would mean nothing to the reader.
pub fn serialize<T: AsFd, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    match super::push_fd(value.as_fd()) {
        Some(Ok(index)) => serializer.serialize_newtype_struct(FD_NEWTYPE_NAME, &index),
        Some(Err(e)) => Err(super::encode_failure(format_args!("could not duplicate a file descriptor: {e}"))),
        None => Err(super::encode_failure(
            "a file descriptor can only be sent by multiproc (process arguments, connections, queues)",
        )),
    }
}

/// Deserializes any descriptor holder; use as `#[serde(with = "multiproc::handle")]` on a field.
///
/// # Errors
///
/// Fails outside multiproc's own decoding, or when the message does not carry the descriptor.
pub fn deserialize<'de, T: From<OwnedFd>, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    struct IndexVisitor;
    impl<'de> de::Visitor<'de> for IndexVisitor {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a file descriptor index")
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
            u32::deserialize(d)
        }
    }
    let index = deserializer.deserialize_newtype_struct(FD_NEWTYPE_NAME, IndexVisitor)?;
    super::take_fd(index).map(T::from).map_err(de::Error::custom)
}
