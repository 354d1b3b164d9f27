//! Waiting for readiness on several descriptors at once (`poll(2)`).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io;

/// What `poll_readable` saw on one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// Data can be read (or the peer hung up: a read will not block).
    pub(crate) ready: bool,
}

/// Waits until at least one of `fds` is readable or hung up, or `timeout` passes (`None`: no limit).
///
/// Retries on `EINTR` with the remaining time. Returns one [`Readiness`] per descriptor, in order;
/// all `ready == false` means the time ran out.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<Readiness>> {
    let mut pollfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    poll_until(&mut pollfds, timeout)?;
    Ok(pollfds
        .iter()
        .map(|p| {
            let r = p.revents();
            Readiness { ready: r.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) }
        })
        .collect())
}

/// What [`poll_one`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Data to read, or end of file.
    Read,
    /// Room to write, or a broken peer (the write will then fail at once).
    Write,
}

impl Interest {
    /// The poll flag that asks for this interest.
    fn flag(self) -> PollFlags {
        match self {
            Interest::Read => PollFlags::IN,
            Interest::Write => PollFlags::OUT,
        }
    }
}

/// Waits until `fd` is ready for `interest` or `timeout` passes (`None`: no limit). Returns whether
/// it became ready. Retries on `EINTR` with the remaining time.
pub(crate) fn poll_one(fd: BorrowedFd<'_>, interest: Interest, timeout: Option<Duration>) -> io::Result<bool> {
    let mut pollfd = [PollFd::new(&fd, interest.flag())];
    Ok(poll_until(&mut pollfd, timeout)? > 0)
}

/// Waits until at least one of `fds` is ready for its interest (or hung up, or in error: the next
/// call on it will not block), or `timeout` passes (`None`: no limit). Returns, per descriptor in
/// order, whether it is ready; all false means the time ran out. Retries on `EINTR`.
pub(crate) fn poll_ready(fds: &[(BorrowedFd<'_>, Interest)], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<PollFd<'_>> = fds.iter().map(|(fd, interest)| PollFd::new(fd, interest.flag())).collect();
    poll_until(&mut pollfds, timeout)?;
    Ok(pollfds.iter().map(|p| !p.revents().is_empty()).collect())
}

/// Whether the peer of the connected socket `fd` has closed every descriptor of its end
/// (`POLLHUP`, without waiting). A socket shut down in one direction by its own side is not hung up.
pub(crate) fn peer_hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut pollfd = [PollFd::new(&fd, PollFlags::empty())];
    matches!(poll_until(&mut pollfd, Some(Duration::ZERO)), Ok(1))
        && pollfd[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
}

/// A new event counter (`eventfd(2)`, close-on-exec, non-blocking): readable while non-zero.
pub(crate) fn doorbell() -> io::Result<OwnedFd> {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)
}

/// Makes a [`doorbell`] readable (adds 1; a counter at its maximum is readable already).
pub(crate) fn ring_doorbell(bell: BorrowedFd<'_>) {
    let _ = rustix::io::write(bell, &1u64.to_ne_bytes());
}

/// Makes a [`doorbell`] unreadable again (reads its counter back to 0; nothing if it was 0).
pub(crate) fn reset_doorbell(bell: BorrowedFd<'_>) {
    let mut count = [0u8; 8];
    let _ = rustix::io::read(bell, &mut count);
}

/// `poll(2)` on `pollfds` for at most `timeout`, retrying on `EINTR` with the time left. Returns
/// how many descriptors are ready (0: the time ran out).
fn poll_until(pollfds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    // A timeout too far away for the clock (`Duration::MAX`) is no limit.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ts = remaining.map(|r| Timespec { tv_sec: r.as_secs() as i64, tv_nsec: i64::from(r.subsec_nanos()) });
        match rustix::event::poll(pollfds, ts.as_ref()) {
            Err(io::Errno::INTR) => continue,
            other => return other,
        }
    }
}
