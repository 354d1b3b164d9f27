//! The fork server's spares: one is kept forked ahead of the next start, and a pool's start has
//! the spares of all its workers (up to 8) forked ahead while it sets them up. Its own test
//! binary (its own fork server), with one test, so that nothing else starts children meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

/// The fork server's children now (workers, spares, and those not yet reaped).
fn server_children(server: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
        .map(|list| list.split_whitespace().count())
        .unwrap_or(0)
}

/// Pools of 6 workers started one after another take their spares forked ahead, and leave one
/// spare waiting, not six: once their workers are gone, the server's children come back down to
/// the one spare kept ahead (and perhaps one not yet reaped).
#[test]
fn pools_take_spares_forked_ahead_and_leave_no_more_waiting() {
    watchdog("pools_take_spares_forked_ahead_and_leave_no_more_waiting", 60, || {
        let server = multiproc::__private::forkserver_pid().unwrap();
        for _ in 0..10 {
            let pool = Pool::new(6).unwrap();
            assert_eq!(pool.map(square, 0..60).unwrap().len(), 60);
            pool.close();
            pool.join().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let children = server_children(server);
            if children <= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the fork server still has {children} children");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}
