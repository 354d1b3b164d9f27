//! The Linux backend of the platform layer.
//!
//! Each file owns one area: file descriptors, processes, sockets with descriptor passing, polling,
//! and the start-up hook that lets a child take over before `main`.

#[cfg(feature = "cluster")]
mod build_id;
mod ctor;
mod dispositions;
mod fd;
mod memory;
mod poll;
mod process;
mod shm;
mod socket;
mod spawn;
mod thread;
mod usage;

#[cfg(feature = "cluster")]
pub(crate) use build_id::build_identity;
pub(crate) use ctor::{keep_startup_hook, mark_hook_ran, startup_hook_ran};
pub(crate) use dispositions::{
    InterruptBefore, hold_interrupt, ignore_interrupt, ignore_termination_signals, release_interrupt,
};
pub(crate) use fd::{arm_kill_on_hangup, dup_cloexec, open_missing_standard_streams, pipe_cloexec, random_bytes};
#[cfg_attr(loom, allow(unused_imports))]
pub(crate) use memory::{
    FutexWait, Mapping, ZeroedPages, futex_wait, futex_wake, memfd_growable, memfd_sealed, memfd_unsealed,
    prefetch_for_write, read_at, release_range, seal_size, sealed_size, unshrinkable_size, write_all_at,
    write_all_vectored_at,
};
pub(crate) use poll::{
    Interest, doorbell, peer_hung_up, poll_one, poll_readable, poll_ready, reset_doorbell, ring_doorbell,
};
pub(crate) use process::{
    ExeIdentity, ForkResult, WaitOutcome, close_inherited_fd, exe_identity, fork, ignore_sigpipe, main_thread_count,
    pidfd_exit_code, pidfd_info_exit, pidfd_open, pidfd_signal, raw_exit, reap_children_automatically,
    register_at_exit, remove_env_before_main, signals, spawn_current_exe, spawn_current_exe_ignoring_termination,
    take_inherited_fd, wait_pidfd,
};
pub(crate) use shm::{on_fork_child, prefault, segment_size, shm_attach, shm_create, shm_unlink};
pub(crate) use socket::{
    MAX_FDS_PER_MESSAGE, Shutdown, SocketKind, ack_now, is_seqpacket, is_unix_socket, next_packet_len,
    prefer_huge_pages, recv_into_spare, recv_plain, recv_record, recv_record_into_spare, recv_record_with_fds,
    recv_with_fds, send_with_fds, set_send_timeout, shutdown, socketpair_cloexec, try_peek, try_recv_into_spare,
    try_recv_plain, try_recv_with_fds, try_send_with_fds, widen_send_buffer,
};
pub(crate) use thread::{ThreadLife, cpus_to_run_on, current_thread, thread_gone, thread_life};
pub(crate) use usage::{involuntary_switches, runnable_tasks};
