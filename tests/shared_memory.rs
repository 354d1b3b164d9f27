//! Shared memory: `SharedMemory` (names, lifecycle, access across processes, the resource tracker
//! under `SIGKILL`), `ShareableList`, `Value`/`Array` and their raw forms. Ports the items of
//! CPython's `_TestSharedMemory`, `_TestValue`, `_TestArray` and `_TestSharedCTypes` that apply.
//! Interoperability with the machine's python3 is in `tests/shm_interop.rs`.

mod common;

use std::io::ErrorKind;
use std::path::Path;

use common::{Outbox, channel, send, wait_for_exit_of, watchdog};
use multiproc::{Error, Event, Process, SharedMemory};

const WATCHDOG_SECS: u64 = 30;

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

fn kind_of(e: &Error) -> ErrorKind {
    match e {
        Error::SharedMemory { source, .. } => source.kind(),
        other => panic!("not a shared memory error: {other}"),
    }
}

fn unique(tag: &str) -> String {
    format!("mp_test_{}_{tag}", std::process::id())
}

// ---- SharedMemory: names, sizes, lifecycle (SHM-01..10, WIRE-10)

#[test]
fn random_names_are_cpython_style_and_files_are_private() {
    let shm = SharedMemory::create(100).unwrap();
    let name = shm.name();
    assert!(name.starts_with("psm_") && name.len() == 12, "{name}");
    assert!(name[4..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{name}");
    let meta = std::fs::metadata(Path::new("/dev/shm").join(name)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 100);
    assert!(shm.is_tracked());
    shm.unlink().unwrap();
    assert!(!exists(shm.name()));
}

#[test]
fn basics_named_block_seen_through_a_second_attachment() {
    let name = unique("basics");
    let shm = SharedMemory::create_named(&name, 512).unwrap();
    assert_eq!(shm.name(), name);
    assert!(shm.size() >= 512);
    assert_eq!(shm.bytes().len(), shm.size());
    assert!(format!("{shm:?}").contains(&name) && format!("{shm:?}").contains("512"));
    shm.write_at(0, b"hello").unwrap();
    let other = SharedMemory::attach(&name).unwrap();
    assert_eq!(other.size(), shm.size());
    let mut buf = [0u8; 5];
    other.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    other.write_at(507, b"world").unwrap();
    assert_eq!(&shm.to_vec()[507..], b"world");
    assert!(!other.is_tracked(), "an attachment is never tracked");
    // A leading slash names the same block (CPython prepends one).
    let slashed = SharedMemory::attach(&format!("/{name}")).unwrap();
    assert_eq!(slashed.name(), name);
    other.close();
    shm.unlink().unwrap();
    let again = shm.unlink().unwrap_err();
    assert_eq!(kind_of(&again), ErrorKind::NotFound);
}

#[test]
fn bad_names_and_sizes_are_refused() {
    assert!(matches!(SharedMemory::create(0), Err(Error::InvalidState(_))));
    assert!(matches!(SharedMemory::attach("abc\0def"), Err(Error::InvalidState(_))));
    assert!(matches!(SharedMemory::create_named("a/b", 8), Err(Error::InvalidState(_))));
    assert!(matches!(SharedMemory::attach(""), Err(Error::InvalidState(_))));
    let missing = SharedMemory::attach(&unique("missing")).unwrap_err();
    assert_eq!(kind_of(&missing), ErrorKind::NotFound);
}

#[test]
fn an_existing_name_is_not_created_again() {
    let name = unique("exists");
    let shm = SharedMemory::create_named(&name, 64).unwrap();
    let taken = SharedMemory::create_named(&name, 64).unwrap_err();
    assert_eq!(kind_of(&taken), ErrorKind::AlreadyExists);
    assert!(taken.to_string().contains(&name), "{taken}");
    shm.unlink().unwrap();
}

#[test]
fn ranges_outside_the_block_are_refused() {
    let shm = SharedMemory::create(16).unwrap();
    assert!(matches!(shm.write_at(10, &[0; 7]), Err(Error::IndexOutOfRange { .. })));
    assert!(matches!(shm.read_at(usize::MAX, &mut [0; 2]), Err(Error::IndexOutOfRange { .. })));
    shm.write_at(10, &[1; 6]).unwrap();
    shm.unlink().unwrap();
}

#[test]
fn a_block_travels_as_a_value_and_keeps_working_after_unlink() {
    let shm = SharedMemory::create(32).unwrap();
    let copy: SharedMemory = travel(&shm);
    assert_eq!(copy.name(), shm.name());
    copy.write_at(0, b"both ways").unwrap();
    assert_eq!(&shm.to_vec()[..9], b"both ways");
    shm.unlink().unwrap();
    // Travelling by descriptor, a value outlives the name (CPython's pickle by name would raise
    // FileNotFoundError here).
    let late: SharedMemory = travel(&copy);
    late.write_at(0, b"still").unwrap();
    assert_eq!(&copy.to_vec()[..5], b"still");
}

/// Sends a value through a pipe, as it would travel to another process.
fn travel<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let (mut a, mut b) = multiproc::pipe().unwrap();
    a.send(value).unwrap();
    b.recv().unwrap()
}

// ---- across processes (SHM-11)

fn write_by_name(name: String, text: String) {
    let shm = SharedMemory::attach(&name).unwrap();
    shm.write_at(0, text.as_bytes()).unwrap();
}

fn write_received(shm: SharedMemory, text: String) {
    shm.write_at(0, text.as_bytes()).unwrap();
}

#[test]
fn children_write_by_name_and_by_value() {
    watchdog("children_write_by_name_and_by_value", WATCHDOG_SECS, || {
        let shm = SharedMemory::create(16).unwrap();
        let mut child = Process::new(write_by_name, (shm.name().to_owned(), "by name".to_owned()));
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        assert_eq!(&shm.to_vec()[..7], b"by name");
        let mut child = Process::new(write_received, (SharedMemory::attach(shm.name()).unwrap(), "by value".to_owned()));
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        assert_eq!(&shm.to_vec()[..8], b"by value");
        assert!(exists(shm.name()), "the children must not unlink the block");
        shm.unlink().unwrap();
    });
}

// ---- the resource tracker (SHM-23..25, RT-01, gh-82300)

/// Creates a block, reports its name and the tracker's pid, and waits to be killed.
fn create_and_wait(outbox: Outbox, track: bool, go: Event) {
    let shm = SharedMemory::options().track(track).create(4096).unwrap();
    shm.write_at(0, b"leaked").unwrap();
    let tracker = multiproc::__private::shm_tracker_pid().unwrap_or(0);
    send(&outbox, &format!("{} {tracker}", shm.name()));
    go.wait();
}

fn started(outbox: Outbox, track: bool, go: &Event) -> Process {
    let mut child = Process::new(create_and_wait, (outbox, track, go.clone()));
    child.start().unwrap();
    child
}

fn report(inbox: &common::Inbox) -> (String, i32) {
    let message = inbox.recv(10);
    let (name, pid) = message.split_once(' ').unwrap();
    (name.to_owned(), pid.parse().unwrap())
}

#[test]
fn a_block_leaked_by_a_killed_creator_is_unlinked() {
    watchdog("a_block_leaked_by_a_killed_creator_is_unlinked", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let go = Event::new().unwrap();
        let mut child = started(outbox, true, &go);
        let (name, tracker) = report(&inbox);
        assert!(tracker > 0, "the creator started a tracker");
        assert!(exists(&name));
        child.kill().unwrap();
        child.join().unwrap();
        // The tracker's only client is gone: it unlinks the block, then exits.
        assert!(wait_for_exit_of(tracker, 10), "the tracker did not exit");
        assert!(!exists(&name), "{name} was left in /dev/shm");
    });
}

#[test]
fn an_untracked_block_outlives_its_creator() {
    watchdog("an_untracked_block_outlives_its_creator", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let go = Event::new().unwrap();
        let mut child = started(outbox, false, &go);
        let (name, tracker) = report(&inbox);
        assert_eq!(tracker, 0, "no tracker for an untracked block");
        child.kill().unwrap();
        child.join().unwrap();
        let shm = SharedMemory::attach(&name).unwrap();
        assert_eq!(&shm.to_vec()[..6], b"leaked");
        shm.unlink().unwrap();
    });
}

fn attach_and_exit(name: String) {
    let shm = SharedMemory::attach(&name).unwrap();
    assert!(!shm.is_tracked());
}

#[test]
fn an_attaching_process_never_unlinks() {
    watchdog("an_attaching_process_never_unlinks", WATCHDOG_SECS, || {
        let shm = SharedMemory::create(64).unwrap();
        for _ in 0..2 {
            let mut child = Process::new(attach_and_exit, (shm.name().to_owned(),));
            child.start().unwrap();
            assert_eq!(child.join().unwrap(), 0);
        }
        assert!(exists(shm.name()));
        shm.unlink().unwrap();
    });
}

/// Creates a tracked block, gives it to a grandchild that holds it until `release`, reports the
/// name, the tracker's pid and the grandchild's pid, then waits to be killed.
fn create_and_hand_over(outbox: Outbox, release: Event, go: Event) {
    let shm = SharedMemory::create(64).unwrap();
    let name = shm.name().to_owned();
    let mut holder = Process::new(hold_until, (shm, release));
    holder.start().unwrap();
    let tracker = multiproc::__private::shm_tracker_pid().unwrap_or(0);
    send(&outbox, &format!("{tracker} {} {name}", holder.pid().unwrap()));
    go.wait();
}

fn hold_until(shm: SharedMemory, release: Event) {
    assert!(shm.is_tracked(), "a block received from a tracking process is tracked");
    shm.write_at(0, b"held").unwrap();
    release.wait();
}

#[test]
fn a_block_handed_to_a_child_stays_until_the_child_ends_too() {
    watchdog("a_block_handed_to_a_child_stays_until_the_child_ends_too", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let release = Event::new().unwrap();
        let go = Event::new().unwrap();
        let mut creator = Process::new(create_and_hand_over, (outbox, release.clone(), go));
        creator.start().unwrap();
        let message = inbox.recv(10);
        let fields: Vec<&str> = message.split(' ').collect();
        let (tracker, holder): (i32, i32) = (fields[0].parse().unwrap(), fields[1].parse().unwrap());
        let name = fields[2].to_owned();
        creator.kill().unwrap();
        creator.join().unwrap();
        assert!(exists(&name), "the holder still uses it");
        let shm = SharedMemory::attach(&name).unwrap();
        assert_eq!(&shm.to_vec()[..4], b"held");
        release.set();
        assert!(wait_for_exit_of(holder, 10));
        assert!(wait_for_exit_of(tracker, 10), "the tracker did not exit");
        assert!(!exists(&name), "{name} was left in /dev/shm");
    });
}
