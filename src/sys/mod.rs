//! The platform layer: the only place in the crate that makes system calls, and the main holder of
//! its `unsafe` code. The crate denies `unsafe_code`; besides this module, only the shared-memory
//! internals (`shm`'s mappings and atomic views, the pipe rings, the queue's shared state, the
//! `ShmSafe` promises of the synchronization states) and the launch of processes (fork, the entry
//! points that travel as offsets) are allowed it, each with `#[allow(unsafe_code, reason = ...)]`.
//!
//! Everything above this layer speaks in owned file descriptors, pids and durations. The backend is
//! chosen once, here; a macOS backend will sit beside `linux` and export the same names.

mod code;
pub(crate) use code::{
    Refused, SignedFn, SignedFnPtr, ZstRule, conjure_zst, conjure_zst_for, function_at, offset_between,
};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc supports Linux only for now; the platform layer keeps other ports in one place");
