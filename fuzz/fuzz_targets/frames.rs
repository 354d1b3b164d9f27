//! The frame decoder: whatever a peer sends, `recv_bytes`, `recv_bytes_into` and `recv` return
//! an error or a message, never panic, hang or allocate past the connection's size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz::frames(data));
