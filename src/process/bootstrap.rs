//! The child side of process start-up: recognising a child, running its target, exiting.
//!
//! A spawned child and the fork server are fresh executions of the parent's binary. The start-up
//! hook (`sys::ctor`, an `.init_array` entry that runs before `main`) calls [`on_startup`], which
//! finds the role in the environment, removes it (so that the child's own children start clean),
//! and takes over: the child never returns to `main`. Children forked by the fork server and by the
//! fork method join the same path in [`enter_child`].
//!
//! A spawned child ends as any program does (`exit`, running exit handlers). A forked child, from
//! the fork server or the fork method, flushes standard output and error and ends with `_exit`, as
//! CPython's do (`os._exit`): the exit handlers it inherited belong to the process it was forked
//! from. A child ends with its target's exit code, 1 after a panic (whose message the panic hook printed
//! under a `Process <name>:` header), or 70 when its launch was refused.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};

use super::identity::{self, ParentDescription, SelfDescription};
use super::launch::{self, ROLE_CHILD, ROLE_FORKSERVER, ROLE_FORKSERVER_PIPES, ROLE_VAR};
use super::{children, forkserver, liveness, start};
use crate::context::{self, StartMethod};
use crate::sys;

/// The exit code of a child whose launch failed before its target ran (`EX_SOFTWARE`).
pub(crate) const EXITCODE_LAUNCH_FAILED: i32 = 70;

/// Called before `main` in every process that links the crate (and by `multiproc::bootstrap()`).
pub(crate) fn on_startup() {
    if !sys::mark_hook_ran() {
        return;
    }
    #[cfg(feature = "cluster")]
    if let Some(url) = std::env::var_os(crate::pool::cluster::WORKER_VAR) {
        // A cluster node agent (this same binary on a worker host): its local pool's workers
        // must not become nodes too.
        sys::remove_env_before_main(crate::pool::cluster::WORKER_VAR);
        if std::env::var_os(ROLE_VAR).is_none() {
            crate::pool::cluster::node_main_from_env(url);
        }
    }
    let Some(role) = std::env::var_os(ROLE_VAR) else { return };
    sys::remove_env_before_main(ROLE_VAR);
    sys::open_missing_standard_streams();
    sys::ignore_sigpipe();
    // SAFETY: a process with the role variable was started by `spawn_current_exe`, which put the
    // socket at the inherited descriptor; this is the only place that takes it.
    let socket = unsafe { sys::take_inherited_fd() };
    if role == ROLE_CHILD {
        run_launched_child(socket, StartMethod::Spawn, true)
    } else if role == ROLE_FORKSERVER {
        forkserver::serve(socket, false)
    } else if role == ROLE_FORKSERVER_PIPES {
        forkserver::serve(socket, true)
    } else if role == crate::shm::tracker::ROLE {
        crate::shm::tracker::serve(socket)
    } else {
        die(&format!("multiproc: unknown role {role:?} in {ROLE_VAR}"))
    }
}

/// Reads the launch packet from `socket` and runs the child. Never returns.
pub(crate) fn run_launched_child(socket: OwnedFd, method: StartMethod, ack: bool) -> ! {
    let launched = launch::recv_packet(socket.as_fd(), ack);
    drop(socket);
    run_checked_child(launched, method)
}

/// Runs the child described by a checked launch packet. Never returns.
pub(crate) fn run_checked_child(launched: crate::error::Result<launch::Launched>, method: StartMethod) -> ! {
    let launched = match launched {
        Ok(launched) => launched,
        Err(e) => die(&format!("multiproc: child launch refused: {e}")),
    };
    // SAFETY: `recv_packet` checked that the parent runs this same executable, so the offset it
    // computed names an entry function of this binary.
    let entry = unsafe { super::target::entry_from_offset(launched.entry_offset) };
    let payload = launched.payload;
    let code = enter_child(launched.me, launched.parent, method, launched.alive, move || entry(payload));
    match method {
        // A forked child must not run the exit handlers of the process it was forked from.
        StartMethod::ForkServer | StartMethod::Fork => finish_child_raw(code),
        StartMethod::Spawn => finish_child(code),
    }
}

/// Becomes the child described by `me` and runs `body`, returning its exit code.
pub(crate) fn enter_child(
    me: SelfDescription,
    parent: ParentDescription,
    method: StartMethod,
    alive: Option<OwnedFd>,
    body: impl FnOnce() -> i32,
) -> i32 {
    if let (true, Some(fd)) = (me.daemon, &alive) {
        arm_daemon(fd);
    }
    let name = me.name.clone();
    identity::become_child(me, parent, alive);
    context::inherit_start_method(method);
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        eprintln!("Process {name}:");
        default_hook(info);
    }));
    panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(1)
}

/// Makes the kernel kill this daemon child when its parent goes; if the parent is already gone,
/// exits now.
fn arm_daemon(alive: &OwnedFd) {
    if let Err(e) = sys::arm_kill_on_hangup(alive.as_fd()) {
        die(&format!("multiproc: a daemon child could not watch its parent: {e}"));
    }
    if matches!(sys::poll_readable(&[alive.as_fd()], Some(std::time::Duration::ZERO)), Ok(r) if r[0].ready) {
        sys::raw_exit(EXITCODE_LAUNCH_FAILED);
    }
}

/// Ends a spawned or fork-server child: joins its own children, flushes, runs exit handlers.
pub(crate) fn finish_child(code: i32) -> ! {
    children::join_all_at_exit();
    std::process::exit(code)
}

/// Ends a forked child without running the exit handlers it inherited from its parent.
pub(crate) fn finish_child_raw(code: i32) -> ! {
    children::join_all_at_exit();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::raw_exit(code)
}

/// In a forked child: forgets the parent's children, liveness pipe and fork server.
pub(crate) fn reset_after_fork() {
    children::forget_all_after_fork();
    liveness::forget_after_fork();
    start::forkserver::forget_after_fork();
}

/// Prints `message` and ends the process with [`EXITCODE_LAUNCH_FAILED`].
pub(crate) fn die(message: &str) -> ! {
    eprintln!("{message}");
    sys::raw_exit(EXITCODE_LAUNCH_FAILED)
}

/// Runs the child side of start-up if this process is a spawned child or the fork server; returns
/// at once otherwise.
///
/// On Linux the crate runs this automatically before `main` (an `.init_array` entry), so programs
/// need not call it. Call it as the first line of `main` if your build drops such entries (some
/// static or LTO link set-ups); `Process::start` tells you with
/// [`Error::StartupHookMissing`](crate::Error::StartupHookMissing) when that is needed. Calling it
/// when the hook already ran does nothing.
///
/// Python: the role of `freeze_support()` and of the `if __name__ == '__main__':` guard.
#[doc(alias = "freeze_support")]
pub fn bootstrap() {
    on_startup();
}
