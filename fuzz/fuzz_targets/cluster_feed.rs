//! What a Redis broker sends a cluster node or client: the feed connection's reader (RESP
//! frames, the fast decoder checked against the `redis` client's parser), stream entries, task
//! and result messages behind their MACs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__private::fuzz_cluster_feed(data));
