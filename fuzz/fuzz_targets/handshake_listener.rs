//! The listener's side of the authentication handshake (`deliver_challenge`, then
//! `answer_challenge`) against a peer that sends arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz::handshake_as_listener(data));
