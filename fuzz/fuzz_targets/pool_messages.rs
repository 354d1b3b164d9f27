//! The pool's worker protocol and its packed sequences: arbitrary bytes as a batch to a worker, a
//! reply to the pool, and the chunks' arguments and results they cut out.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz_pool_messages(data));
