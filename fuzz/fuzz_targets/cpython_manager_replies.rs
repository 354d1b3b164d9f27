//! The decoder of a CPython manager's replies (pickled `('#RETURN', value)`, `('#ERROR', exc)`,
//! `('#PROXY', ...)`, ...): whatever a server sends, the client gets a reply or an error, never a
//! panic. Seeds: `corpus/cpython_manager_replies/` (replies captured from CPython 3.11).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz_cpython_manager_reply(data));
