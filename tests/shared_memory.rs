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
        let mut child =
            Process::new(write_received, (SharedMemory::attach(shm.name()).unwrap(), "by value".to_owned()));
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        assert_eq!(&shm.to_vec()[..8], b"by value");
        assert!(exists(shm.name()), "the children must not unlink the block");
        shm.unlink().unwrap();
    });
}

// ---- the resource tracker (SHM-23..25, RT-01, gh-82300)

/// Creates a block (tracked if `track`; `untrack` stops tracking it after creation), reports its
/// name and the tracker's pid, and waits to be killed.
fn create_and_wait(outbox: Outbox, track: bool, untrack: bool, go: Event) {
    let mut shm = SharedMemory::options().track(track).create(4096).unwrap();
    if untrack {
        shm.untrack();
        assert!(!shm.is_tracked());
    }
    shm.write_at(0, b"leaked").unwrap();
    let tracker = multiproc::__private::shm_tracker_pid().unwrap_or(0);
    send(&outbox, &format!("{} {tracker}", shm.name()));
    go.wait_timeout(std::time::Duration::from_secs(20));
}

fn started(outbox: Outbox, track: bool, untrack: bool, go: &Event) -> Process {
    let mut child = Process::new(create_and_wait, (outbox, track, untrack, go.clone()));
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
        let mut child = started(outbox, true, false, &go);
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
        let mut child = started(outbox, false, false, &go);
        let (name, tracker) = report(&inbox);
        assert_eq!(tracker, 0, "no tracker for an untracked block");
        child.kill().unwrap();
        child.join().unwrap();
        let shm = SharedMemory::attach(&name).unwrap();
        assert_eq!(&shm.to_vec()[..6], b"leaked");
        shm.unlink().unwrap();
    });
}

#[test]
fn an_untracked_block_stays_after_its_creator_is_killed() {
    watchdog("an_untracked_block_stays_after_its_creator_is_killed", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let go = Event::new().unwrap();
        let mut child = started(outbox, true, true, &go);
        let (name, tracker) = report(&inbox);
        child.kill().unwrap();
        child.join().unwrap();
        assert!(wait_for_exit_of(tracker, 10), "the tracker did not exit");
        assert!(exists(&name), "untrack() kept the block");
        SharedMemory::attach(&name).unwrap().unlink().unwrap();
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
/// tracker's pid, the grandchild's pid and the name, then waits to be killed.
fn create_and_hand_over(outbox: Outbox, release: Event, go: Event) {
    let shm = SharedMemory::create(64).unwrap();
    let name = shm.name().to_owned();
    let mut holder = Process::new(hold_until, (shm, release, multiproc::Handle::new(outbox.try_clone().unwrap())));
    holder.start().unwrap();
    let tracker = multiproc::__private::shm_tracker_pid().unwrap_or(0);
    send(&outbox, &format!("{tracker} {} {name}", holder.pid().unwrap()));
    go.wait_timeout(std::time::Duration::from_secs(20));
}

fn hold_until(shm: SharedMemory, release: Event, outbox: Outbox) {
    assert!(shm.is_tracked(), "a block received from a tracking process is tracked");
    shm.write_at(0, b"held").unwrap();
    send(&outbox, "holding");
    // Bounded, so that a failed test leaves no process behind.
    release.wait_timeout(std::time::Duration::from_secs(20));
}

#[test]
fn a_block_handed_to_a_child_stays_until_the_child_ends_too() {
    watchdog("a_block_handed_to_a_child_stays_until_the_child_ends_too", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let release = Event::new().unwrap();
        let go = Event::new().unwrap();
        let mut creator = Process::new(create_and_hand_over, (outbox, release.clone(), go));
        creator.start().unwrap();
        let (first, second) = (inbox.recv(10), inbox.recv(10));
        let message = if first == "holding" { second } else { first };
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

// ---- ShareableList (SHM-15..22, WIRE-09)

use multiproc::ShareableList;
use multiproc::shm::Item;

#[test]
fn shareable_list_items_print_as_python_prints_them() {
    // Issue 15, 8: `print(sl[0])` shows the text; the list's repr shows the items' reprs.
    let items = [Item::from("howdy"), Item::from(b"HoWdY"), Item::Float(-273.154), Item::Float(1e16), Item::None];
    let text: Vec<String> = items.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["howdy", "b'HoWdY'", "-273.154", "1e+16", "None"]);
    assert_eq!(items[0].repr(), "'howdy'");
    let sl = ShareableList::new(common::seed_003_items()).unwrap();
    assert!(
        format!("{sl:?}").starts_with("ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42]"),
        "{sl:?}"
    );
    sl.shm().unlink().unwrap();
}

#[test]
fn a_str_cut_in_the_middle_of_a_character_is_an_error_as_in_cpython() {
    // Issue 16, 4: CPython decodes strictly (UnicodeDecodeError); this crate gave U+FFFD.
    let sl = ShareableList::new([Item::from("hé")]).unwrap();
    // One item: the count, two offsets, then the data: "h", then the two bytes of 'é'.
    let data = 8 + 8 * 2;
    sl.shm().write_at(data + 2, &[0]).unwrap();
    let e = sl.get(0).unwrap_err();
    assert!(matches!(&e, Error::Codec { detail, .. } if detail.contains("UnicodeDecodeError")), "{e}");
    assert!(sl.to_vec().is_err());
    sl.shm().unlink().unwrap();
}

#[test]
fn shareable_list_basics() {
    let sl = ShareableList::new(common::seed_003_items()).unwrap();
    let repr = format!("{sl:?}");
    assert!(
        repr.contains(sl.name()) && repr.contains("'howdy'".trim_matches('\'')) && repr.contains("-273.154"),
        "{repr}"
    );
    assert!(matches!(sl.get(7), Err(Error::IndexOutOfRange { .. })));
    assert!(matches!(sl.set(7, 2), Err(Error::IndexOutOfRange { .. })));
    assert_eq!(sl.format(), "8s8sdqxxxxxx?xxxxxxxx?q");
    assert_eq!(sl.len(), 7);
    assert_eq!(sl.index(100).unwrap(), 3);
    assert!(matches!(sl.index("100"), Err(Error::NotInList(_))));
    assert_eq!(sl.get(0).unwrap(), Item::from("howdy"));
    assert_eq!(sl.get(-2).unwrap(), Item::Bool(true));
    assert_eq!(sl.to_vec().unwrap(), common::seed_003_items());
    // Same-type writes keep the format; a str into the None slot takes that slot's 8 bytes.
    sl.set(0, "howdy").unwrap();
    sl.set(3, 42).unwrap();
    sl.set(4, "some").unwrap();
    assert_eq!(sl.format(), "8s8sdq8sxxxxxxx?q");
    let too_long = sl.set(4, "far too many").unwrap_err();
    assert!(too_long.to_string().contains("exceeds available storage"), "{too_long}");
    assert_eq!(sl.get(4).unwrap(), Item::from("some"));
    // count, with Python's equality (True == 1, but not 42).
    assert_eq!(sl.count(42).unwrap(), 2);
    assert_eq!(sl.count(b"HoWdY").unwrap(), 1);
    assert_eq!(sl.count(b"adios").unwrap(), 0);
    assert_eq!(sl.count(1).unwrap(), 1, "True == 1");
    sl.shm().unlink().unwrap();
}

#[test]
fn shareable_list_utf8_limits() {
    let sl = ShareableList::new(["seven c", "x"]).unwrap();
    sl.set(0, "encodés").unwrap(); // 8 UTF-8 bytes fit an 8-byte slot
    assert_eq!(sl.get(0).unwrap(), Item::from("encodés"));
    assert_eq!(sl.get(1).unwrap(), Item::from("x"), "the neighbour is intact");
    assert!(matches!(sl.set(0, "encodées"), Err(Error::ItemTooLarge { needed: 9, available: 8 })));
    assert!(matches!(sl.set(0, b"123456789"), Err(Error::ItemTooLarge { .. })));
    assert_eq!(sl.get(0).unwrap(), Item::from("encodés"));
    // A non-ASCII string gets a slot for all its UTF-8 bytes (CPython counts code points).
    let wide = ShareableList::new(["ééééééé"]).unwrap();
    assert_eq!(wide.get(0).unwrap(), Item::from("ééééééé"));
    sl.shm().unlink().unwrap();
    wide.shm().unlink().unwrap();
}

#[test]
fn shareable_list_copies_attaches_and_travels() {
    let sl = ShareableList::new(common::seed_003_items()).unwrap();
    let name = unique("sl_copy");
    let copy = ShareableList::create_named(&name, sl.to_vec().unwrap()).unwrap();
    assert_eq!(copy.name(), name);
    assert_eq!(copy.to_vec().unwrap(), sl.to_vec().unwrap());
    assert_eq!(copy.format(), sl.format());
    copy.set(0, "other").unwrap();
    assert_eq!(sl.get(0).unwrap(), Item::from("howdy"), "independent copy");
    let same = ShareableList::attach(sl.name()).unwrap();
    same.set(3, 7).unwrap();
    assert_eq!(sl.get(3).unwrap(), Item::Int(7));
    let travelled: ShareableList = travel(&sl);
    travelled.set(3, 8).unwrap();
    assert_eq!(sl.get(3).unwrap(), Item::Int(8));
    copy.shm().unlink().unwrap();
    sl.shm().unlink().unwrap();
    assert_eq!(kind_of(&ShareableList::attach(sl.name()).unwrap_err()), ErrorKind::NotFound);
}

#[test]
fn an_empty_shareable_list() {
    let sl = ShareableList::new(Vec::<Item>::new()).unwrap();
    assert_eq!(sl.len(), 0);
    assert!(sl.is_empty());
    assert_eq!(sl.format(), "");
    assert_eq!(sl.count(Item::None).unwrap(), 0);
    assert!(matches!(sl.index(Item::None), Err(Error::NotInList(_))));
    assert_eq!(sl.shm().to_vec(), vec![0u8; 16]);
    sl.shm().unlink().unwrap();
}

#[test]
fn garbage_is_not_taken_for_a_list() {
    for garbage in [
        vec![0xffu8; 64],
        [100i64.to_ne_bytes(), [0; 8]].concat(),
        [1i64.to_ne_bytes(), 0i64.to_ne_bytes(), 900i64.to_ne_bytes()].concat(),
    ] {
        let shm = SharedMemory::create(garbage.len()).unwrap();
        shm.write_at(0, &garbage).unwrap();
        assert!(matches!(ShareableList::attach(shm.name()), Err(Error::InvalidState(_))));
        shm.unlink().unwrap();
    }
}

fn set_last(name: String) {
    let sl = ShareableList::attach(&name).unwrap();
    sl.set(-1, -999).unwrap();
}

#[test]
fn a_child_attaches_a_list_by_name() {
    watchdog("a_child_attaches_a_list_by_name", WATCHDOG_SECS, || {
        let sl = ShareableList::new(0..5).unwrap();
        let mut child = Process::new(set_last, (sl.name().to_owned(),));
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        assert_eq!(sl.to_vec().unwrap(), [0, 1, 2, 3, -999].map(Item::Int));
        sl.shm().unlink().unwrap();
    });
}

// ---- Value, Array, RawValue, RawArray (VAL-01, VAL-02, ARR-01..03, SCT-01)

use multiproc::{Array, Lock, RawArray, RawValue, Value};

#[allow(clippy::type_complexity)]
fn set_values(
    values: (Value<i32>, Value<f64>, Value<i16>, Value<i64>, Value<u8>),
    raw: (RawValue<i32>, RawValue<f64>, RawValue<i64>),
) {
    values.0.set(24234).unwrap();
    values.1.set(-4.25).unwrap();
    values.2.set(234).unwrap();
    values.3.set(1 << 34).unwrap();
    values.4.set(b'y').unwrap();
    raw.0.set(24234);
    raw.1.set(-4.25);
    raw.2.set(1 << 34);
}

#[test]
fn values_set_by_a_child_are_seen_by_the_parent() {
    watchdog("values_set_by_a_child_are_seen_by_the_parent", WATCHDOG_SECS, || {
        let values = (
            Value::new(4343i32).unwrap(),
            Value::new(3.625f64).unwrap(),
            Value::new(-232i16).unwrap(),
            Value::new(1i64 << 33).unwrap(),
            Value::new(b'x').unwrap(),
        );
        let raw =
            (RawValue::new(4343i32).unwrap(), RawValue::new(3.625f64).unwrap(), RawValue::new(1i64 << 33).unwrap());
        assert_eq!((values.0.get().unwrap(), values.1.get().unwrap(), values.2.get().unwrap()), (4343, 3.625, -232));
        assert_eq!((values.3.get().unwrap(), values.4.get().unwrap()), (1 << 33, b'x'));
        let mut child = Process::new(set_values, (values.clone(), raw.clone()));
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        assert_eq!((values.0.get().unwrap(), values.1.get().unwrap(), values.2.get().unwrap()), (24234, -4.25, 234));
        assert_eq!((values.3.get().unwrap(), values.4.get().unwrap()), (1 << 34, b'y'));
        assert_eq!((raw.0.get(), raw.1.get(), raw.2.get()), (24234, -4.25, 1 << 34));
    });
}

#[test]
fn get_lock_and_get_obj() {
    let v = Value::new(5i32).unwrap();
    assert!(!v.get_lock().locked());
    assert_eq!(v.get_obj().get(), 5);
    let lock = Lock::new().unwrap();
    let with_lock = Value::with_lock(RawValue::new(5i32).unwrap(), lock.clone()).unwrap();
    let guard = with_lock.acquire().unwrap();
    assert!(lock.locked(), "the value's lock is the lock given");
    guard.set(6);
    drop(guard);
    assert_eq!(with_lock.get().unwrap(), 6);
    let arr = Array::with_lock(RawArray::<i32>::new(3).unwrap(), lock.clone()).unwrap();
    let _held = arr.acquire().unwrap();
    assert!(lock.locked());
}

fn prefix_sum(arr: Array<i32>, raw: RawArray<i32>) {
    let guard = arr.acquire().unwrap();
    for i in 1..guard.len() {
        guard.set(i, guard.get(i).unwrap() + guard.get(i - 1).unwrap()).unwrap();
    }
    for i in 1..raw.len() {
        raw.set(i, raw.get(i).unwrap() + raw.get(i - 1).unwrap()).unwrap();
    }
}

#[test]
fn arrays_index_slice_and_are_changed_by_a_child() {
    watchdog("arrays_index_slice_and_are_changed_by_a_child", WATCHDOG_SECS, || {
        let seq = [681, 626, 934, 821, 150, 233, 548, 982, 714, 831];
        let arr = Array::from_slice(&seq).unwrap();
        let raw = RawArray::from_slice(&seq).unwrap();
        assert_eq!(arr.len(), 10);
        assert_eq!(arr.get(3).unwrap(), 821);
        assert_eq!(arr.read(2..7).unwrap(), &seq[2..7]);
        assert!(matches!(arr.get(10), Err(Error::IndexOutOfRange { .. })));
        assert!(matches!(arr.write(8, &[1, 2, 3]), Err(Error::IndexOutOfRange { .. })));
        arr.write(2, &[1, 2, 3, 4, 5]).unwrap();
        arr.write(2, &seq[2..7]).unwrap();
        assert_eq!(arr.to_vec().unwrap(), seq);
        let mut child = Process::new(prefix_sum, (arr.clone(), raw.clone()));
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        let expected: Vec<i32> = seq.iter().scan(0, |sum, x| Some(*sum + x).inspect(|s| *sum = *s)).collect();
        assert_eq!(arr.to_vec().unwrap(), expected);
        assert_eq!(raw.to_vec(), expected);
    });
}

#[test]
fn new_arrays_are_zero_filled() {
    for _ in 0..3 {
        let arr = Array::<i32>::new(10).unwrap();
        assert_eq!(arr.to_vec().unwrap(), [0; 10]);
        arr.write(0, &(0..10).collect::<Vec<_>>()).unwrap();
        assert_eq!(arr.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
    }
    assert!(RawArray::<f64>::new(0).unwrap().is_empty());
}

fn double(v: Value<f64>, arr: Array<f64>, counter: RawValue<u64>) {
    v.update(|x| x * 2.0).unwrap();
    let guard = arr.acquire().unwrap();
    let doubled: Vec<f64> = guard.to_vec().iter().map(|x| x * 2.0).collect();
    guard.write(0, &doubled).unwrap();
    counter.cell().fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn a_child_doubles_shared_numbers() {
    watchdog("a_child_doubles_shared_numbers", WATCHDOG_SECS, || {
        let v = Value::new(1.5f64).unwrap();
        let arr = Array::from_slice(&(0..10).map(f64::from).collect::<Vec<_>>()).unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let mut children: Vec<Process> =
            (0..2).map(|_| Process::new(double, (v.clone(), arr.clone(), counter.clone()))).collect();
        for child in &mut children {
            child.start().unwrap();
        }
        for child in &mut children {
            assert_eq!(child.join().unwrap(), 0);
        }
        assert_eq!(v.get().unwrap(), 6.0);
        assert_eq!(arr.to_vec().unwrap(), (0..10).map(|x| f64::from(x) * 4.0).collect::<Vec<_>>());
        assert_eq!(counter.get(), 2);
    });
}

/// Takes the value's lock and waits to be killed inside the critical section.
fn die_holding(v: Value<i64>, outbox: Outbox) {
    let guard = v.acquire().unwrap();
    guard.set(-1);
    send(&outbox, "holding");
    std::thread::park_timeout(std::time::Duration::from_secs(20));
}

#[test]
fn a_holder_killed_inside_the_lock_is_reported() {
    watchdog("a_holder_killed_inside_the_lock_is_reported", WATCHDOG_SECS, || {
        let v = Value::new(7i64).unwrap();
        let (inbox, outbox) = channel();
        let mut child = Process::new(die_holding, (v.clone(), outbox));
        child.start().unwrap();
        assert_eq!(inbox.recv(10), "holding");
        child.kill().unwrap();
        child.join().unwrap();
        assert!(matches!(v.get(), Err(Error::OwnerDied { .. })));
        match v.acquire() {
            Err(multiproc::sync::AcquireError::OwnerDied(died)) => {
                let guard = died.recover();
                assert_eq!(guard.get(), -1, "the half-done update is visible");
                guard.set(7);
            }
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        assert_eq!(v.get().unwrap(), 7);
    });
}

// ---- structures, 'c' strings, copy (SCT-01, SCT-02)

use multiproc::{RawStruct, SharedStruct};

multiproc::structure! {
    #[derive(Debug, PartialEq)]
    struct Point { x: i32, y: f64, z: i64 }
}

fn double_locked(
    i: Value<i32>,
    d: Value<f64>,
    q: Value<i64>,
    point: SharedStruct<Point>,
    arr: Array<f64>,
    string: Array<u8>,
) {
    i.update(|v| v * 2).unwrap();
    d.update(|v| v * 2.0).unwrap();
    q.update(|v| v * 2).unwrap();
    point.update(|p| Point { x: p.x * 2, y: p.y * 2.0, z: p.z * 2 }).unwrap();
    let guard = arr.acquire().unwrap();
    let doubled: Vec<f64> = guard.to_vec().iter().map(|x| x * 2.0).collect();
    guard.write(0, &doubled).unwrap();
    drop(guard);
    let guard = string.acquire().unwrap();
    let text = guard.value();
    guard.set_value(&[text.as_slice(), &text].concat()).unwrap();
}

fn double_raw(
    i: RawValue<i32>,
    d: RawValue<f64>,
    q: RawValue<i64>,
    point: RawStruct<Point>,
    arr: RawArray<f64>,
    string: RawArray<u8>,
) {
    i.set(i.get() * 2);
    d.set(d.get() * 2.0);
    q.set(q.get() * 2);
    let p = point.get();
    point.set(Point { x: p.x * 2, y: p.y * 2.0, z: p.z * 2 });
    let doubled: Vec<f64> = arr.to_vec().iter().map(|x| x * 2.0).collect();
    arr.write(0, &doubled).unwrap();
    let text = string.value();
    string.set_value(&[text.as_slice(), &text].concat()).unwrap();
}

const POINT: Point = Point { x: 1, y: 2.0, z: 1 << 40 };
const DOUBLED: Point = Point { x: 2, y: 4.0, z: 1 << 41 };

#[test]
fn a_child_doubles_values_structures_arrays_and_strings_with_a_lock() {
    watchdog("a_child_doubles_values_structures_arrays_and_strings_with_a_lock", WATCHDOG_SECS, || {
        let (i, d, q) = (Value::new(7i32).unwrap(), Value::new(1.0 / 3.0).unwrap(), Value::new(-(1i64 << 40)).unwrap());
        let point = SharedStruct::new(POINT).unwrap();
        let arr = Array::from_slice(&(0..10).map(f64::from).collect::<Vec<_>>()).unwrap();
        let string = Array::<u8>::new(16).unwrap();
        string.set_value(b"hello").unwrap();
        let args = (i.clone(), d.clone(), q.clone(), point.clone(), arr.clone(), string.clone());
        let mut child = Process::new(double_locked, args);
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        assert_eq!((i.get().unwrap(), d.get().unwrap(), q.get().unwrap()), (14, 2.0 / 3.0, -(1i64 << 41)));
        assert_eq!(point.get().unwrap(), DOUBLED);
        assert_eq!(arr.to_vec().unwrap(), (0..10).map(|x| f64::from(x) * 2.0).collect::<Vec<_>>());
        assert_eq!(string.value().unwrap(), b"hellohello");
    });
}

#[test]
fn a_child_doubles_values_structures_arrays_and_strings_without_a_lock() {
    watchdog("a_child_doubles_values_structures_arrays_and_strings_without_a_lock", WATCHDOG_SECS, || {
        let (i, d, q) =
            (RawValue::new(7i32).unwrap(), RawValue::new(1.0 / 3.0).unwrap(), RawValue::new(-(1i64 << 40)).unwrap());
        let point = RawStruct::new(POINT).unwrap();
        let arr = RawArray::from_slice(&(0..10).map(f64::from).collect::<Vec<_>>()).unwrap();
        let string = RawArray::<u8>::new(16).unwrap();
        string.set_value(b"hello").unwrap();
        let args = (i.clone(), d.clone(), q.clone(), point.clone(), arr.clone(), string.clone());
        let mut child = Process::new(double_raw, args);
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        assert_eq!((i.get(), d.get(), q.get()), (14, 2.0 / 3.0, -(1i64 << 41)));
        assert_eq!(point.get(), DOUBLED);
        assert_eq!(arr.to_vec(), (0..10).map(|x| f64::from(x) * 2.0).collect::<Vec<_>>());
        assert_eq!(string.value(), b"hellohello");
    });
}

#[test]
fn char_arrays_have_c_string_values() {
    let string = RawArray::<u8>::new(5).unwrap();
    assert_eq!(string.value(), b"");
    string.set_value(b"hello").unwrap();
    assert_eq!(string.value(), b"hello", "a value as long as the array fills it without a NUL");
    string.set_value(b"hi").unwrap();
    assert_eq!(string.value(), b"hi");
    assert_eq!(string.to_vec(), b"hi\0lo", "a shorter value is NUL-terminated, the rest stays");
    assert!(matches!(string.set_value(b"toolong"), Err(Error::StringTooLong { needed: 7, available: 5 })));
    assert_eq!(string.to_vec(), b"hi\0lo", "a value too long changes nothing");
}

#[test]
fn copies_are_independent() {
    let point = RawStruct::new(POINT).unwrap();
    let copy = point.copy().unwrap();
    assert_eq!(copy.get(), POINT);
    point.set(DOUBLED);
    assert_eq!(copy.get(), POINT);
    copy.set(Point { x: 0, y: 0.0, z: 0 });
    assert_eq!(point.get(), DOUBLED);

    let locked = SharedStruct::new(POINT).unwrap();
    let locked_copy = locked.copy().unwrap();
    locked.set(DOUBLED).unwrap();
    assert_eq!(locked_copy.get().unwrap(), POINT);

    let v = Value::new(1.5f64).unwrap();
    let v_copy = v.copy().unwrap();
    v.set(3.0).unwrap();
    assert_eq!((v.get().unwrap(), v_copy.get().unwrap()), (3.0, 1.5));
    let raw_v = RawValue::new(1u8).unwrap();
    let raw_v_copy = raw_v.copy().unwrap();
    raw_v.set(2);
    assert_eq!(raw_v_copy.get(), 1);

    let arr = Array::<i32, Lock>::with_lock(RawArray::from_slice(&[1, 2, 3]).unwrap(), Lock::new().unwrap()).unwrap();
    let arr_copy = arr.copy().unwrap();
    arr.set(0, 10).unwrap();
    assert_eq!(arr_copy.to_vec().unwrap(), [1, 2, 3]);
    let raw = arr.get_obj().copy().unwrap();
    arr.set(1, 20).unwrap();
    assert_eq!(raw.to_vec(), [10, 2, 3]);
}

#[test]
fn a_structure_of_another_type_is_refused() {
    multiproc::structure! {
        struct Other { a: i32, b: f64, c: i64 }
    }
    let point = RawStruct::new(POINT).unwrap();
    let (mut a, mut b) = multiproc::pipe().unwrap();
    a.send(&point).unwrap();
    assert!(b.recv::<RawStruct<Other>>().is_err());
    a.send(&point).unwrap();
    assert_eq!(b.recv::<RawStruct<Point>>().unwrap().get(), POINT);
}

// ---- the resource tracker, continued (RT-01, RT-02, RT-03, RT-05, RT-07, SHM-26)

use multiproc::__private::shm_tracker_pid;

/// Creates two tracked blocks, reports their names and the tracker's pid, waits to be killed.
fn create_two_and_wait(outbox: Outbox, go: Event) {
    let (first, second) = (SharedMemory::create(64).unwrap(), SharedMemory::create(64).unwrap());
    let tracker = shm_tracker_pid().unwrap_or(0);
    send(&outbox, &format!("{} {} {tracker}", first.name(), second.name()));
    go.wait_timeout(std::time::Duration::from_secs(20));
}

#[test]
fn a_block_unlinked_by_someone_else_does_not_stop_the_cleanup() {
    // RT-01: the tracker unlinks what is left and shrugs at what is already gone.
    watchdog("a_block_unlinked_by_someone_else", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let go = Event::new().unwrap();
        let mut child = Process::new(create_two_and_wait, (outbox, go));
        child.start().unwrap();
        let message = inbox.recv(10);
        let fields: Vec<&str> = message.split(' ').collect();
        let (first, second, tracker) = (fields[0], fields[1], fields[2].parse::<i32>().unwrap());
        SharedMemory::attach(first).unwrap().unlink().unwrap();
        child.kill().unwrap();
        child.join().unwrap();
        assert!(wait_for_exit_of(tracker, 10), "the tracker did not exit");
        assert!(!exists(second), "{second} was left in /dev/shm");
    });
}

fn signal_ignored(pid: i32, signal: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap().trim();
    u64::from_str_radix(mask, 16).unwrap() & (1 << (signal - 1)) != 0
}

#[test]
fn the_tracker_ignores_sigint_and_sigterm() {
    // RT-02: Ctrl-C or a SIGTERM to the process group must not take the tracker (and the
    // cleanup it owes) away.
    watchdog("the_tracker_ignores_sigint_and_sigterm", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let go = Event::new().unwrap();
        let mut child = started(outbox, true, false, &go);
        let (name, tracker) = report(&inbox);
        assert!(signal_ignored(tracker, 2) && signal_ignored(tracker, 15), "SIGINT/SIGTERM not ignored");
        let pid = rustix::process::Pid::from_raw(tracker).unwrap();
        for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
            rustix::process::kill_process(pid, signal).unwrap();
        }
        assert!(!wait_for_exit_of(tracker, 0), "the tracker died of an ignored signal");
        child.kill().unwrap();
        child.join().unwrap();
        assert!(wait_for_exit_of(tracker, 10), "the tracker did not exit");
        assert!(!exists(&name), "the tracker no longer cleans up after a signal");
    });
}

/// Creates a block, kills its tracker with SIGKILL, creates another; reports both names, the
/// killed tracker and the current one; waits to be killed.
fn outlive_the_tracker(outbox: Outbox, go: Event) {
    let first = SharedMemory::create(64).unwrap();
    let killed = shm_tracker_pid().unwrap();
    common::sigkill(killed);
    assert!(wait_for_exit_of(killed, 10));
    let second = SharedMemory::create(64).unwrap();
    let tracker = shm_tracker_pid().unwrap_or(0);
    send(&outbox, &format!("{} {} {killed} {tracker}", first.name(), second.name()));
    go.wait_timeout(std::time::Duration::from_secs(20));
}

#[test]
fn a_tracker_killed_with_sigkill_is_replaced() {
    // RT-03: the next registration starts a new tracker, which takes over every block the
    // process still holds.
    watchdog("a_tracker_killed_with_sigkill_is_replaced", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let go = Event::new().unwrap();
        let mut child = Process::new(outlive_the_tracker, (outbox, go));
        child.start().unwrap();
        let message = inbox.recv(10);
        let fields: Vec<&str> = message.split(' ').collect();
        let (first, second) = (fields[0], fields[1]);
        let (killed, tracker) = (fields[2].parse::<i32>().unwrap(), fields[3].parse::<i32>().unwrap());
        assert!(tracker > 0 && tracker != killed, "no new tracker: {message}");
        child.kill().unwrap();
        child.join().unwrap();
        assert!(wait_for_exit_of(tracker, 10), "the new tracker did not exit");
        assert!(!exists(second), "{second} was left in /dev/shm");
        assert!(!exists(first), "{first} (created before the kill) was left in /dev/shm");
    });
}

#[test]
fn a_name_too_long_to_track_is_refused_and_leaves_nothing() {
    // RT-05: a tracked name must fit the tracker's records; an untracked one need not.
    let name = format!("{}_{}", unique("long"), "x".repeat(255)).chars().take(255).collect::<String>();
    let refused = SharedMemory::create_named(&name, 64).unwrap_err();
    assert!(matches!(&refused, Error::InvalidState(m) if m.contains("too long")), "{refused}");
    assert!(!exists(&name), "the refused block was left in /dev/shm");
    let untracked = SharedMemory::options().name(&name).track(false).create(64).unwrap();
    untracked.unlink().unwrap();
    let over = SharedMemory::create_named(&format!("{name}x"), 64).unwrap_err();
    assert_eq!(kind_of(&over), ErrorKind::InvalidInput, "{over}");
}

/// The calling thread's blocked-signal mask.
fn blocked_signals() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("SigBlk:")).unwrap().trim().to_owned()
}

fn start_a_tracker_and_compare_masks(outbox: Outbox) {
    assert_eq!(shm_tracker_pid(), None, "a fresh child has no tracker yet");
    let before = blocked_signals();
    let shm = SharedMemory::create(64).unwrap();
    assert!(shm_tracker_pid().is_some());
    send(&outbox, &format!("{before} {}", blocked_signals()));
    shm.unlink().unwrap();
}

#[test]
fn starting_the_tracker_leaves_the_signal_mask_alone() {
    // RT-07 (gh-127586)
    watchdog("starting_the_tracker_leaves_the_signal_mask_alone", WATCHDOG_SECS, || {
        let (inbox, outbox) = channel();
        let mut child = Process::new(start_a_tracker_and_compare_masks, (outbox,));
        child.start().unwrap();
        let message = inbox.recv(10);
        assert_eq!(child.join().unwrap(), 0);
        let (before, after) = message.split_once(' ').unwrap();
        assert_eq!(before, after, "the blocked-signal mask changed");
    });
}

fn create_named_and_wait(name: String, outbox: Outbox, go: Event) {
    let shm = SharedMemory::create_named(&name, 64).unwrap();
    shm.write_at(0, b"odd").unwrap();
    send(&outbox, &shm_tracker_pid().unwrap_or(0).to_string());
    go.wait_timeout(std::time::Duration::from_secs(20));
}

#[test]
fn names_with_colons_and_newlines_are_tracked_like_others() {
    // SHM-26: the tracker's records hold any name, so no separator can break them.
    watchdog("names_with_colons_and_newlines", WATCHDOG_SECS, || {
        let odd = ["a:b", "::double::colons::", "name\nwithnewline", "colon:and\nnewline", "with space"];
        for tail in odd {
            let name = format!("{}_{tail}", unique("odd"));
            let shm = SharedMemory::create_named(&name, 64).unwrap();
            shm.write_at(0, b"odd").unwrap();
            assert_eq!(&SharedMemory::attach(&name).unwrap().to_vec()[..3], b"odd");
            shm.unlink().unwrap();
            assert!(!exists(&name), "{name:?} was left in /dev/shm");
        }
        // Left behind by a killed creator, such a name is still unlinked by its tracker.
        let name = format!("{}_killed:creator\nname", unique("odd"));
        let (inbox, outbox) = channel();
        let mut child = Process::new(create_named_and_wait, (name.clone(), outbox, Event::new().unwrap()));
        child.start().unwrap();
        let tracker: i32 = inbox.recv(10).parse().unwrap();
        assert!(exists(&name));
        child.kill().unwrap();
        child.join().unwrap();
        assert!(wait_for_exit_of(tracker, 10), "the tracker did not exit");
        assert!(!exists(&name), "{name:?} was left in /dev/shm");
    });
}
