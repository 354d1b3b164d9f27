//! The children this process started: their records, reaping, `active_children()`, and what
//! happens to them when the process exits.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::sys::{self, WaitOutcome};

/// How the exit status of a child reaches us.
#[derive(Debug)]
pub(crate) enum ExitSource {
    /// Our own child: reaped with `waitid` on its pidfd.
    Direct,
    /// A child of the fork server. Where the kernel keeps exit codes for pidfd holders there is no
    /// pipe; otherwise the server writes the exit code (8 bytes, little-endian) on this pipe after
    /// reaping the child, and end of file without a code means the server died first (exit code
    /// 255, as in CPython).
    ForkServer(Option<std::fs::File>),
}

/// A started child, shared by its `Process` handle and the registry.
#[derive(Debug)]
pub(crate) struct ChildRecord {
    pub(crate) pid: i32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// Readable once the child has ended; also used to signal it without pid-reuse races.
    pub(crate) pidfd: Arc<OwnedFd>,
    /// For a daemon: the write end of its liveness pipe, held until the child is reaped.
    keepalive: Mutex<Option<OwnedFd>>,
    state: Mutex<ChildState>,
}

#[derive(Debug)]
struct ChildState {
    source: ExitSource,
    exitcode: Option<i32>,
}

/// The exit code given when the fork server died before reporting a child's status.
pub(crate) const EXITCODE_UNKNOWN: i32 = 255;

impl ChildRecord {
    pub(crate) fn new(
        pid: i32,
        name: String,
        daemon: bool,
        pidfd: OwnedFd,
        source: ExitSource,
        keepalive: Option<OwnedFd>,
    ) -> Arc<Self> {
        Arc::new(ChildRecord {
            pid,
            name,
            daemon,
            pidfd: Arc::new(pidfd),
            keepalive: Mutex::new(keepalive),
            state: Mutex::new(ChildState { source, exitcode: None }),
        })
    }

    /// The exit code if the child has ended (reaping it), `None` while it runs.
    pub(crate) fn poll(&self) -> Result<Option<i32>> {
        self.wait(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` (`None`: without limit) for the child to end; returns its exit code,
    /// or `None` if it still runs.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        if let Some(code) = self.state().exitcode {
            return Ok(Some(code));
        }
        let pidfd = Arc::clone(&self.pidfd);
        let ready = sys::poll_readable(&[pidfd.as_fd()], timeout).context("wait for a child process")?;
        if !ready[0].ready {
            return Ok(None);
        }
        let mut state = self.state();
        if let Some(code) = state.exitcode {
            return Ok(Some(code));
        }
        let code = match &mut state.source {
            ExitSource::Direct => match sys::wait_pidfd(pidfd.as_fd(), false).context("reap a child process")? {
                WaitOutcome::Exited(code) => code,
                WaitOutcome::Running => return Ok(None),
            },
            // The kernel knows the status of a child it reaped for the fork server (Linux 6.15+);
            // otherwise the server reports it on the status pipe.
            ExitSource::ForkServer(status) => fork_server_exit_code(&pidfd, status),
        };
        state.exitcode = Some(code);
        drop(state);
        self.drop_keepalive();
        Ok(Some(code))
    }

    /// The exit code, if already known, without any system call.
    pub(crate) fn known_exitcode(&self) -> Option<i32> {
        self.state().exitcode
    }

    /// Sends signal `signo`; a child that has already ended is left alone.
    pub(crate) fn signal(&self, signo: i32) -> Result<()> {
        if self.known_exitcode().is_some() {
            return Ok(());
        }
        match sys::pidfd_signal(self.pidfd.as_fd(), signo) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(Error::io("signal a child process", e)),
        }
    }

    fn drop_keepalive(&self) {
        self.keepalive.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ChildState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The exit code of an ended fork-server child.
///
/// Where the server reports exit codes (kernels before 6.15), it writes the code on the status
/// pipe after reaping the child; end of file without it means the server died first (then the
/// kernel is asked, in case it knows, and the code is 255 if it does not, as in CPython). Otherwise the kernel reaped the child and keeps the code for
/// pidfd holders. The pidfd turns readable a moment before the kernel records the code, so the code
/// is asked for again, briefly, if it is not there yet.
fn fork_server_exit_code(pidfd: &OwnedFd, status: &mut Option<std::fs::File>) -> i32 {
    if let Some(status) = status {
        let reported = read_status(status);
        if reported != EXITCODE_UNKNOWN {
            return reported;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(100);
    loop {
        if let Some(code) = sys::pidfd_exit_code(pidfd.as_fd()) {
            return code;
        }
        if std::time::Instant::now() >= deadline {
            return EXITCODE_UNKNOWN;
        }
        std::thread::yield_now();
    }
}

fn read_status(status: &mut std::fs::File) -> i32 {
    let mut buf = [0u8; 8];
    match status.read_exact(&mut buf) {
        Ok(()) => i64::from_le_bytes(buf) as i32,
        Err(_) => EXITCODE_UNKNOWN,
    }
}

static CHILDREN: Mutex<Vec<Arc<ChildRecord>>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

fn children() -> std::sync::MutexGuard<'static, Vec<Arc<ChildRecord>>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds a started child to the registry (and, the first time, registers the exit handler).
pub(crate) fn register(child: Arc<ChildRecord>) {
    AT_EXIT.call_once(|| {
        if let Err(e) = sys::register_at_exit(at_exit) {
            tracing::warn!("could not register the exit handler that joins children: {e}");
        }
    });
    children().push(child);
}

/// Reaps children that have ended and drops them from the registry (their handles keep the exit
/// code).
pub(crate) fn reap_finished() {
    let snapshot: Vec<_> = children().clone();
    let finished: Vec<i32> =
        snapshot.iter().filter(|c| matches!(c.poll(), Ok(Some(_)) | Err(_))).map(|c| c.pid).collect();
    if !finished.is_empty() {
        children().retain(|c| !finished.contains(&c.pid));
    }
}

/// Drops one child from the registry (after its handle joined it).
pub(crate) fn forget(pid: i32) {
    children().retain(|c| c.pid != pid);
}

/// In a forked child: the parent's children are not ours.
pub(crate) fn forget_all_after_fork() {
    // The registry's mutex may not be lockable if the fork happened while another thread held it;
    // forking with other threads is refused unless the caller took that risk explicitly.
    for child in children().drain(..) {
        // Handles in the inherited memory may keep the record alive; close the write end now.
        child.drop_keepalive();
    }
}

/// A child that is still running, as `active_children()` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveChild {
    /// Its process id.
    pub pid: i32,
    /// Its name.
    pub name: String,
    /// Whether it is a daemon.
    pub daemon: bool,
}

/// The children of this process that are still running. As in CPython, it reaps those that have
/// ended first.
pub fn active_children() -> Vec<ActiveChild> {
    reap_finished();
    children().iter().map(|c| ActiveChild { pid: c.pid, name: c.name.clone(), daemon: c.daemon }).collect()
}

/// Runs at process exit (and at the end of every child): terminates daemon children, then joins
/// every child, as CPython's `util._exit_function` does.
pub(crate) fn join_all_at_exit() {
    let snapshot: Vec<_> = children().drain(..).collect();
    for child in snapshot.iter().filter(|c| c.daemon) {
        let _ = child.signal(sys::signals::SIGTERM);
    }
    for child in &snapshot {
        let _ = child.wait(None);
    }
}

extern "C" fn at_exit() {
    join_all_at_exit();
}
