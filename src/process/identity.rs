//! Who this process is: its name, daemon flag, authkey and parent, as `current_process()` and
//! `parent_process()` report them.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sys;

/// This process's own description, as its parent gave it (or the defaults of a main process).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SelfDescription {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) authkey: Vec<u8>,
    /// The position in the process tree: empty for the main process, `[1]` for its first child,
    /// `[1, 2]` for that child's second child.
    pub(crate) identity: Vec<u32>,
}

/// What a child knows of its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ParentDescription {
    pub(crate) pid: i32,
    pub(crate) name: String,
}

struct State {
    me: SelfDescription,
    parent: Option<(ParentDescription, Option<OwnedFd>)>,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            Mutex::new(State {
                me: SelfDescription {
                    name: "MainProcess".into(),
                    daemon: false,
                    authkey: sys::random_bytes::<32>().map(|k| k.to_vec()).unwrap_or_else(|_| fallback_key()),
                    identity: Vec::new(),
                },
                parent: None,
            })
        })
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fallback_key() -> Vec<u8> {
    // getrandom cannot fail on the kernels we support; a time-and-pid key keeps the process going.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut key = t.as_nanos().to_le_bytes().to_vec();
    key.extend_from_slice(&std::process::id().to_le_bytes());
    key
}

static CHILD_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Installs the description a child received from its parent, and the read end of the parent's
/// liveness pipe.
pub(crate) fn become_child(me: SelfDescription, parent: ParentDescription, parent_alive: Option<OwnedFd>) {
    let mut s = state();
    s.me = me;
    s.parent = Some((parent, parent_alive));
    CHILD_COUNTER.store(0, Ordering::Relaxed);
}

/// A snapshot of this process's description.
pub(crate) fn me() -> SelfDescription {
    state().me.clone()
}

/// The description of the next child: its default name and identity, and this process's authkey.
pub(crate) fn next_child(daemon: bool, name_prefix: &str) -> SelfDescription {
    let me = me();
    let n = CHILD_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let mut identity = me.identity.clone();
    identity.push(n);
    let name = format!("{name_prefix}-{}", identity.iter().map(u32::to_string).collect::<Vec<_>>().join(":"));
    SelfDescription { name, daemon, authkey: me.authkey, identity }
}

/// Information about the running process (CPython `current_process()`).
///
/// # Examples
///
/// ```
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id() as i32);
/// ```
#[derive(Debug, Clone)]
pub struct CurrentProcess {
    me: SelfDescription,
    pid: i32,
}

impl CurrentProcess {
    /// The process's name: `MainProcess` in the main process, the name its parent gave otherwise.
    pub fn name(&self) -> &str {
        &self.me.name
    }
    /// The process id.
    #[doc(alias = "ident")]
    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// Whether this process is a daemon (it dies with its parent and may not start children).
    pub fn daemon(&self) -> bool {
        self.me.daemon
    }
    /// The authentication key, 32 random bytes in the main process, inherited by children. Used by
    /// `Listener`/`Client` and managers as the default key.
    pub fn authkey(&self) -> &[u8] {
        &self.me.authkey
    }
    /// The process's position in the tree (`[]` in the main process, `[1, 2]` for the second child
    /// of the first child).
    pub fn identity(&self) -> &[u32] {
        &self.me.identity
    }
    /// Always true: the current process runs.
    pub fn is_alive(&self) -> bool {
        true
    }
    /// Always `None`: the current process has not ended.
    pub fn exitcode(&self) -> Option<i32> {
        None
    }
}

/// Describes the running process.
pub fn current_process() -> CurrentProcess {
    CurrentProcess { me: me(), pid: std::process::id() as i32 }
}

/// The parent of a child process, as seen from the child (CPython `parent_process()`).
#[derive(Debug)]
pub struct ParentProcess {
    pid: i32,
    name: String,
    alive: Option<OwnedFd>,
}

impl ParentProcess {
    /// The parent's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Whether the parent still runs.
    pub fn is_alive(&self) -> bool {
        self.join_timeout(Duration::ZERO).is_none()
    }
    /// Waits up to `timeout` for the parent to end; `Some(())` once it has ended, `None` if it still
    /// runs.
    pub fn join_timeout(&self, timeout: Duration) -> Option<()> {
        let fd = self.alive.as_ref()?;
        match sys::poll_readable(&[fd.as_fd()], Some(timeout)) {
            Ok(r) if r[0].ready => Some(()),
            _ => None,
        }
    }
    /// Waits for the parent to end.
    pub fn join(&self) {
        if let Some(fd) = &self.alive {
            let _ = sys::poll_readable(&[fd.as_fd()], None);
        }
    }
}

/// This process's parent, or `None` in the main process (CPython `parent_process()`).
pub fn parent_process() -> Option<ParentProcess> {
    let s = state();
    let (parent, alive) = s.parent.as_ref()?;
    Some(ParentProcess {
        pid: parent.pid,
        name: parent.name.clone(),
        alive: alive.as_ref().and_then(|fd| sys::dup_cloexec(fd.as_fd()).ok()),
    })
}
