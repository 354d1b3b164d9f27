//! The pickle decoder (`src/pickle/decode.rs`, after the walk of `src/pickle/ops.rs`): whatever a
//! peer sends, a value or an error, never a panic, a hang or memory beyond the walk's budget; a
//! decoded value encodes and decodes back to itself. Seeds: `corpus/pickle_values/` (CPython
//! 3.11's pickles of sets, datetimes, decimals, UUIDs, big integers... in protocols 0 to 5).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz_pickle(data));
