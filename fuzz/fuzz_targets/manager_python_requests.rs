//! The manager server's front for CPython clients (`src/manager/python_front.rs`): whatever a
//! client sends as a request `(ident, name, args, kwds)`, a reply or an error, never a panic, a
//! wait or memory beyond what one request may make (each input runs against a fresh object
//! table: as a request to the server, then as a method call on a channel). Seeds:
//! `corpus/manager_python_requests/` (requests pickled by CPython 3.11).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz_manager_python_request(data));
