//! The manager server's request decoder and handler: whatever a client sends, the server answers
//! with a reply or an error, never panics, waits or leaks (each input runs against a fresh object
//! table: several requests in a row, so calls reach the objects created before them).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz_manager_request(data));
