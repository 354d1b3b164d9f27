//! Waiting for readiness on several descriptors at once (`poll(2)`).

use std::os::fd::BorrowedFd;
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

/// Waits until `fd` is ready for `interest` or `timeout` passes (`None`: no limit). Returns whether
/// it became ready. Retries on `EINTR` with the remaining time.
pub(crate) fn poll_one(fd: BorrowedFd<'_>, interest: Interest, timeout: Option<Duration>) -> io::Result<bool> {
    let flags = match interest {
        Interest::Read => PollFlags::IN,
        Interest::Write => PollFlags::OUT,
    };
    let mut pollfd = [PollFd::new(&fd, flags)];
    Ok(poll_until(&mut pollfd, timeout)? > 0)
}

/// `poll(2)` on `pollfds` for at most `timeout`, retrying on `EINTR` with the time left. Returns
/// how many descriptors are ready (0: the time ran out).
fn poll_until(pollfds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ts = remaining.map(|r| Timespec { tv_sec: r.as_secs() as i64, tv_nsec: i64::from(r.subsec_nanos()) });
        match rustix::event::poll(pollfds, ts.as_ref()) {
            Err(io::Errno::INTR) => continue,
            other => return other,
        }
    }
}
