//! Waiting on several objects at once (CPython `multiprocessing.connection.wait`).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::error::{IoContext, Result};
use crate::sys;

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no limit), and
/// returns the indices of the ready ones (empty when the time ran out).
///
/// An object is a [`Connection`](crate::Connection) or anything with a file descriptor: a process
/// [`sentinel`](crate::Process::sentinel) is ready when the process has ended, a connection,
/// socket or pipe when it can be read (or its peer closed). A closed connection is an error.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiproc::{wait, Process};
///
/// fn work(ms: u64) { std::thread::sleep(Duration::from_millis(ms)); }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut quick = Process::new(work, (10,));
/// let mut slow = Process::new(work, (10_000,));
/// quick.start()?;
/// slow.start()?;
/// let ready = wait(&[&quick.sentinel()?, &slow.sentinel()?], Some(Duration::from_secs(5)))?;
/// assert_eq!(ready, vec![0]);
/// slow.kill()?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "connection.wait")]
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(|o| o.wait_fd()).collect::<Result<_>>()?;
    let readiness = sys::poll_readable(&fds, timeout).context("wait for objects")?;
    Ok(readiness.iter().enumerate().filter(|(_, r)| r.ready).map(|(i, _)| i).collect())
}

/// Something [`wait`] can wait on: a [`Connection`](crate::Connection), or anything with a file
/// descriptor.
pub trait Waitable {
    /// The descriptor to poll for reading.
    fn wait_fd(&self) -> Result<BorrowedFd<'_>>;
}

impl<T: AsFd + ?Sized> Waitable for T {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.as_fd())
    }
}
