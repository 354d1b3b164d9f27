//! The manager server's channels for CPython clients (`src/manager/channel.rs`): a thread that
//! spins for its client's next request still notices the client leaving, and a server whose
//! clients are idle costs no CPU. The client is this crate's CPython-protocol client
//! (`manager::cpython`), which speaks to the server as CPython's proxies do; no python3 needed.
//!
//! CPU time is measured with `getrusage` as a loose bound (a spin lasts at most 200 µs per wait),
//! not as a timing claim.

#![cfg(feature = "pickle")]

mod common;

use std::time::Duration;

use multiproc::manager::Server;
use multiproc::manager::cpython::PyManager;

const WATCHDOG_SECS: u64 = 60;
const KEY: &[u8] = b"python channels";

/// Calls made before each check, so that the channel's thread spins between them.
const CALLS: usize = 2000;

/// The tests run one at a time: the CPU measured is the whole process's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// CPU time (user + system) of this whole process so far: the server's threads and the client's.
fn process_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid buffer for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A server on a free loopback port serving in a thread, with a lock named `"the_lock"`.
fn start_server() -> (multiproc::connection::Address, multiproc::manager::ManagerClient) {
    let server = Server::bind::<()>("127.0.0.1:0".parse().unwrap(), Some(KEY)).unwrap();
    let owner = server.client();
    let lock = owner.lock().unwrap();
    server.register("the_lock", lock.object()).unwrap();
    let address = server.address().clone();
    std::thread::spawn(move || server.serve_forever());
    (address, owner)
}

/// A client holds the server's lock through its channel after a burst of calls (the channel's
/// thread spins for the next one), then goes away: the thread notices the closed channel and
/// releases the lock, as it does for a thread asleep in `recv`.
#[test]
fn a_spinning_channel_notices_its_client_leaving() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    common::watchdog("spinning channel, client leaves", WATCHDOG_SECS, || {
        let (address, owner) = start_server();
        let lock = owner.named("the_lock").lock().unwrap();
        for _ in 0..3 {
            let python = PyManager::connect(&address, KEY).unwrap();
            let dict = python.dict("dict", ()).unwrap();
            let remote_lock = python.create("the_lock", ()).unwrap();
            for i in 0..CALLS {
                dict.set(&(i % 16), &i).unwrap();
            }
            assert!(remote_lock.call::<_, bool>("acquire", ()).unwrap());
            assert!(lock.locked().unwrap(), "the Python client holds the lock");
            drop((dict, remote_lock, python));
            // Released only when the channel's thread sees the client gone.
            let guard = lock.acquire_timeout(Duration::from_secs(20)).unwrap();
            drop(guard);
        }
        owner.shutdown().unwrap();
    });
}

/// After a burst of calls, a connected client that makes no calls costs the server no CPU: the
/// channel's thread spins at most once, briefly, then sleeps in `recv`.
#[test]
fn an_idle_channel_costs_no_cpu() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    common::watchdog("idle channel", WATCHDOG_SECS, || {
        let (address, owner) = start_server();
        let python = PyManager::connect(&address, KEY).unwrap();
        let dict = python.dict("dict", ()).unwrap();
        for i in 0..CALLS {
            dict.set(&(i % 16), &i).unwrap();
        }
        let idle = Duration::from_millis(500);
        let before = process_cpu_time();
        // The idle period measured (not a synchronization): the client keeps its channel open.
        std::thread::sleep(idle);
        let spent = process_cpu_time() - before;
        eprintln!("idle channel: {spent:?} of CPU in {idle:?}");
        assert!(spent < idle / 5, "an idle channel cost {spent:?} of CPU in {idle:?}");
        // The channel still answers.
        dict.set(&"after", &1).unwrap();
        assert_eq!(dict.get::<_, i64>(&"after").unwrap(), Some(1));
        drop((dict, python));
        owner.shutdown().unwrap();
    });
}
