//! [`Deadline`]: when a blocking operation made of several waits must give up.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::sys::{self, Interest};

/// An optional point in time, with the timeout it came from (for the error that reports it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Option<(Instant, Duration)>,
}

impl Deadline {
    /// No limit.
    pub(crate) const NONE: Deadline = Deadline { at: None };

    /// `timeout` from now (`None`: no limit; so is a timeout too far away for the clock, such as
    /// `Duration::MAX`).
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        Deadline { at: timeout.and_then(|t| Some((Instant::now().checked_add(t)?, t))) }
    }

    /// Whether there is a limit.
    pub(crate) fn is_bounded(self) -> bool {
        self.at.is_some()
    }

    /// The time left (`None`: no limit); `Some(ZERO)` once passed.
    pub(crate) fn left(self) -> Option<Duration> {
        self.at.map(|(at, _)| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the limit has passed.
    pub(crate) fn passed(self) -> bool {
        self.left() == Some(Duration::ZERO)
    }

    /// The error for running out of time.
    pub(crate) fn timeout_error(self) -> Error {
        Error::Timeout(self.at.map(|(_, total)| total).unwrap_or_default())
    }

    /// Waits until `fd` is ready for `interest`, or fails with [`Error::Timeout`]. Without a limit,
    /// returns at once (the blocking call that follows does the waiting).
    pub(crate) fn wait(self, fd: BorrowedFd<'_>, interest: Interest) -> Result<()> {
        if !self.is_bounded() {
            return Ok(());
        }
        match sys::poll_one(fd, interest, self.left()).context("wait on a descriptor")? {
            true => Ok(()),
            false => Err(self.timeout_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_beyond_the_clock_is_no_limit() {
        let far = Deadline::after(Some(Duration::MAX));
        assert!(!far.is_bounded());
        assert!(!far.passed());
        assert!(Deadline::after(Some(Duration::from_secs(60))).is_bounded());
    }
}
