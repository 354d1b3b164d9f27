//! The platform layer: the only place in the crate that makes system calls or holds `unsafe` code
//! (besides the shared-memory internals of later modules).
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
