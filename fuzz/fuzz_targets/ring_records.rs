//! The record decoder of a pipe's shared-memory ring: whatever a peer process writes into the
//! ring, a receiver takes records within what was published, ends, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz::ring_records(data));
