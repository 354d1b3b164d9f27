//! `SharedMemoryManager` (issue 8; conformance.md SHM-12..14): blocks created through the manager
//! are attachable by name, owned by the server and unlinked when it stops, by shutdown, by drop,
//! and when the server is killed, alone or with its owner (`SIGKILL`: the resource tracker unlinks
//! them). Clients in child processes create blocks
//! in the same manager. Every check of `/dev/shm` looks only at the names this test created.

mod common;

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use common::{Outbox, channel, send, sigkill, wait_for_exit_of, watchdog};
use multiproc::manager::{SharedMemoryClient, SharedMemoryManager};
use multiproc::shm::Item;
use multiproc::{Error, Manager, Process, ShareableList, SharedMemory};

const WATCHDOG_SECS: u64 = 30;

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

fn attach_error_kind(name: &str) -> ErrorKind {
    match SharedMemory::attach(name) {
        Err(Error::SharedMemory { source, .. }) => source.kind(),
        Err(other) => panic!("attaching {name}: not a shared memory error: {other}"),
        Ok(_) => panic!("{name} is still in /dev/shm"),
    }
}

/// Polls `condition` (a state that another process changes) until it holds; the watchdog bounds it.
fn eventually(mut condition: impl FnMut() -> bool) {
    while !condition() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn blocks_are_attachable_then_gone_after_shutdown() {
    // SHM-14
    watchdog("blocks_are_attachable_then_gone_after_shutdown", WATCHDOG_SECS, || {
        let mut smm = SharedMemoryManager::start().unwrap();
        let shm = smm.shared_memory(100).unwrap();
        assert!(shm.size() >= 100);
        assert!(!shm.is_tracked(), "the manager owns the block, not this process");
        let sl = smm.shareable_list([Item::from("howdy"), Item::Int(42), Item::None]).unwrap();
        assert_eq!(smm.segments().unwrap(), [shm.name(), sl.name()]);

        shm.write_at(0, b"through the manager").unwrap();
        let other = SharedMemory::attach(shm.name()).unwrap();
        assert_eq!(&other.to_vec()[..19], b"through the manager");
        let same_list = ShareableList::attach(sl.name()).unwrap();
        assert_eq!(same_list.get(0).unwrap(), Item::from("howdy"));

        smm.shutdown().unwrap();
        assert_eq!(smm.server_exitcode(), Some(0));
        assert_eq!(attach_error_kind(shm.name()), ErrorKind::NotFound);
        assert_eq!(attach_error_kind(sl.name()), ErrorKind::NotFound);
        // The mappings this process holds still work after the unlink, as in CPython.
        assert_eq!(&shm.to_vec()[..3], b"thr");

        // CPython's "before start()" is impossible here; after shutdown, creating fails.
        assert!(smm.shared_memory(16).is_err());
        assert!(smm.shareable_list(0..3).is_err());
        smm.shutdown().unwrap();
    });
}

#[test]
fn dropping_the_manager_unlinks_its_blocks() {
    watchdog("dropping_the_manager_unlinks_its_blocks", WATCHDOG_SECS, || {
        let smm = SharedMemoryManager::start().unwrap();
        let pid = smm.server_pid().unwrap();
        let names: Vec<String> = (0..3).map(|_| smm.shared_memory(64).unwrap().name().to_owned()).collect();
        assert!(names.iter().all(|n| exists(n)));
        drop(smm);
        assert!(names.iter().all(|n| !exists(n)), "a block outlived the manager");
        assert!(wait_for_exit_of(pid, 10));
    });
}

#[test]
fn track_release_and_blocks_unlinked_by_hand() {
    watchdog("track_release_and_blocks_unlinked_by_hand", WATCHDOG_SECS, || {
        let mut smm = SharedMemoryManager::start().unwrap();
        let a = smm.shared_memory(16).unwrap();
        let b = smm.shared_memory(16).unwrap();
        smm.release(a.name()).unwrap();
        assert!(!exists(a.name()));
        assert_eq!(smm.segments().unwrap(), [b.name()]);
        assert!(matches!(smm.release(a.name()), Err(Error::Remote(_))), "released twice");

        // A block made elsewhere, handed over.
        let mut c = SharedMemory::create(32).unwrap();
        assert!(c.is_tracked());
        smm.track(&mut c).unwrap();
        assert!(!c.is_tracked());
        assert_eq!(smm.segments().unwrap(), [b.name(), c.name()]);

        // A block someone unlinked already is skipped at shutdown, without an error.
        b.unlink().unwrap();
        smm.shutdown().unwrap();
        assert_eq!(smm.server_exitcode(), Some(0));
        assert!(!exists(c.name()));
    });
}

fn create_in_child(client: SharedMemoryClient, out: Outbox) -> multiproc::Result<()> {
    let sl = client.shareable_list(0..10)?;
    sl.set(0, 100)?;
    let shm = client.shared_memory(8)?;
    shm.write_at(0, b"child")?;
    // The child creates its blocks under its parent's tracker: it starts none of its own.
    let tracker = multiproc::__private::shm_tracker_pid().unwrap_or(0);
    send(&out, &format!("{} {} {tracker}", sl.name(), shm.name()));
    Ok(())
}

#[test]
fn a_child_creates_blocks_that_outlive_it() {
    watchdog("a_child_creates_blocks_that_outlive_it", WATCHDOG_SECS, || {
        let smm = SharedMemoryManager::start().unwrap();
        let (inbox, outbox) = channel();
        let mut child = Process::new(create_in_child, (smm.try_clone(), outbox));
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        let message = inbox.recv(10);
        let fields: Vec<&str> = message.split(' ').collect();
        let (list, block) = (fields[0], fields[1]);
        assert_eq!(fields[2], "0", "the child started a resource tracker of its own");
        assert_eq!(ShareableList::attach(list).unwrap().get(0).unwrap(), Item::Int(100));
        assert_eq!(&SharedMemory::attach(block).unwrap().to_vec()[..5], b"child");
        assert_eq!(smm.segments().unwrap(), [list, block]);
        drop(smm);
        assert!(!exists(list) && !exists(block));
    });
}

fn signal_ignored(pid: i32, signal: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap().trim();
    u64::from_str_radix(mask, 16).unwrap() & (1 << (signal - 1)) != 0
}

#[test]
fn the_server_ignores_sigint() {
    // SHM-12 (bpo-36368: Ctrl-C reaches the whole process group)
    watchdog("the_server_ignores_sigint", WATCHDOG_SECS, || {
        let smm = SharedMemoryManager::start().unwrap();
        let pid = smm.server_pid().unwrap();
        assert!(signal_ignored(pid, 2), "SIGINT is not ignored by the server");
        let before = smm.shared_memory(16).unwrap();
        let target = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::kill_process(target, rustix::process::Signal::INT).unwrap();
        let after = smm.shared_memory(16).unwrap();
        assert_eq!(smm.segments().unwrap(), [before.name(), after.name()]);
        drop(smm);
        assert!(!exists(before.name()) && !exists(after.name()));
    });
}

/// The process ids of `pid`'s children.
fn children_of(pid: i32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn the_server_shares_the_owners_tracker() {
    // SHM-13 (bpo-36867): no tracker of the server's own, so nothing to complain at shutdown.
    watchdog("the_server_shares_the_owners_tracker", WATCHDOG_SECS, || {
        let smm = SharedMemoryManager::start().unwrap();
        let list = smm.shareable_list(0..4).unwrap();
        let pid = smm.server_pid().unwrap();
        assert_eq!(children_of(pid), Vec::<String>::new(), "the server started a process");
        drop(smm);
        assert!(!exists(list.name()));
    });
}

fn own_manager_and_wait(out: Outbox) -> multiproc::Result<()> {
    let smm = SharedMemoryManager::start()?;
    let shm = smm.shared_memory(4096)?;
    let sl = smm.shareable_list(0..100)?;
    send(&out, &format!("{} {} {}", smm.server_pid().unwrap_or(0), shm.name(), sl.name()));
    loop {
        std::thread::park();
    }
}

#[test]
fn a_killed_owner_takes_server_and_blocks_with_it() {
    watchdog("a_killed_owner_takes_server_and_blocks_with_it", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let mut owner = Process::new(own_manager_and_wait, (outbox,));
        owner.start().unwrap();
        let message = inbox.recv(10);
        let fields: Vec<&str> = message.split(' ').collect();
        let server: i32 = fields[0].parse().unwrap();
        assert!(server > 0);
        assert!(exists(fields[1]) && exists(fields[2]));
        sigkill(owner.pid().unwrap());
        owner.join().unwrap();
        assert!(wait_for_exit_of(server, 10), "the server outlived its owner");
        // The server (a daemon child) was killed with its owner; the resource tracker, which held
        // the blocks for it, unlinks them as soon as it sees the server gone.
        eventually(|| !exists(fields[1]) && !exists(fields[2]));
    });
}

#[test]
fn a_killed_server_leaves_no_block() {
    watchdog("a_killed_server_leaves_no_block", WATCHDOG_SECS, || {
        let mut smm = SharedMemoryManager::start().unwrap();
        let shm = smm.shared_memory(64).unwrap();
        let sl = smm.shareable_list(0..10).unwrap();
        let server = smm.server_pid().unwrap();
        sigkill(server);
        assert!(wait_for_exit_of(server, 10));
        // The resource tracker sees the server gone and unlinks what it held.
        eventually(|| !exists(shm.name()) && !exists(sl.name()));
        assert!(smm.shared_memory(16).is_err(), "the server is gone");
        smm.shutdown().unwrap();
        assert_eq!(smm.server_exitcode(), Some(-9));
    });
}

#[test]
fn clients_connect_by_address_only_to_a_shared_memory_manager() {
    watchdog("clients_connect_by_address_only_to_a_shared_memory_manager", WATCHDOG_SECS, || {
        let key = b"abracadabra";
        let address =
            multiproc::connection::Address::Abstract(format!("multiproc-test-smm-{}", std::process::id()).into_bytes());
        let smm = SharedMemoryManager::start_at(address.clone(), key).unwrap();
        let client = SharedMemoryClient::connect(address.clone(), Some(key)).unwrap();
        let shm = client.shared_memory(16).unwrap();
        assert_eq!(smm.segments().unwrap(), [shm.name()]);
        assert!(SharedMemoryClient::connect(address, Some(b"wrong")).is_err());

        let manager = Manager::start().unwrap();
        let refused =
            SharedMemoryClient::connect(manager.address().clone(), Some(multiproc::current_process().authkey()));
        assert!(matches!(refused, Err(Error::Remote(_))), "{refused:?}");
        drop(smm);
        assert!(!exists(shm.name()));
    });
}
