//! Waiting on several objects at once (CPython `multiprocessing.connection.wait`).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::deadline::Deadline;
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
    // Each object's descriptor, then the extra ones of those that have one (`slots[i]`: where
    // object i's extra descriptor is in `fds`).
    let mut fds: Vec<BorrowedFd<'_>> = objects.iter().map(|o| o.wait_fd()).collect::<Result<_>>()?;
    let mut extra = Vec::with_capacity(objects.len());
    for object in objects {
        extra.push(object.extra_wait_fd().map(|fd| {
            fds.push(fd);
            fds.len() - 1
        }));
    }
    let deadline = Deadline::after(timeout);
    loop {
        let ready = wait_once(objects, &fds, &extra, deadline)?;
        // Nothing ready although the poll woke: a wake-up for a message another receiver took.
        if !ready.is_empty() || deadline.passed() {
            return Ok(ready);
        }
    }
}

/// One poll of `objects` (their descriptors `fds`, extra ones at `extra`) until `deadline`.
fn wait_once(
    objects: &[&dyn Waitable],
    fds: &[BorrowedFd<'_>],
    extra: &[Option<usize>],
    deadline: Deadline,
) -> Result<Vec<usize>> {
    let mut ready_first = Vec::with_capacity(objects.len());
    let mut failure = None;
    for object in objects {
        match object.before_poll() {
            Ok(ready) => ready_first.push(ready),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let polled = match failure {
        Some(_) => None,
        None => {
            let timeout = if ready_first.contains(&true) { Some(Duration::ZERO) } else { deadline.left() };
            match sys::poll_readable(fds, timeout).context("wait for objects") {
                Ok(readiness) => Some(readiness),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        }
    };
    // Every object prepared is finished, whatever failed.
    let mut ready = Vec::new();
    for (i, ready_now) in ready_first.into_iter().enumerate() {
        if ready_now {
            ready.push(i);
            continue;
        }
        let fd_ready = polled.as_ref().is_some_and(|p| p[i].ready);
        let extra_ready = polled.as_ref().zip(extra[i]).is_some_and(|(p, at)| p[at].ready);
        match objects[i].after_poll(fd_ready, extra_ready) {
            Ok(true) => ready.push(i),
            Ok(false) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ready),
    }
}

/// Something [`wait`] can wait on: a [`Connection`](crate::Connection), or anything with a file
/// descriptor.
pub trait Waitable {
    /// The descriptor to poll for reading.
    fn wait_fd(&self) -> Result<BorrowedFd<'_>>;

    /// A second descriptor to poll with the first (a pipe's doorbell).
    #[doc(hidden)]
    fn extra_wait_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Called before the descriptor is polled: whether the object is ready without a poll (then
    /// [`after_poll`](Self::after_poll) is not called). Objects with state beside their descriptor
    /// (a pipe's shared-memory ring) register here as waiting.
    #[doc(hidden)]
    fn before_poll(&self) -> Result<bool> {
        Ok(false)
    }

    /// Called after the poll, with whether the descriptor (and the extra one) was readable:
    /// whether the object is ready.
    #[doc(hidden)]
    fn after_poll(&self, fd_ready: bool, extra_ready: bool) -> Result<bool> {
        Ok(fd_ready || extra_ready)
    }
}

impl<T: AsFd + ?Sized> Waitable for T {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.as_fd())
    }
}
