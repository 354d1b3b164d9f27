//! The shared_memory group.
//!
//! `bench/python/shared_memory.py` does the same work with CPython's `SharedMemory` and
//! synchronized `Array('i', 1024)`, children started with `fork`. Ours: the transfer's writer is
//! started with the default method (the start method does not matter once it runs: the clock
//! starts in the child, just before its first write).

use std::time::Duration;

use multiproc::{Array, Event, Process, RawValue, SharedMemory};

use crate::{median, monotonic_ns, sample};

/// How long each metric samples (after its warm-up).
const BUDGET: Duration = Duration::from_millis(1000);

/// Create 4 KiB (registered with the resource tracker), attach by name, close both, unlink.
fn lifecycle_4k() -> f64 {
    let op = || {
        let a = SharedMemory::create(4096).expect("create");
        let b = SharedMemory::attach(a.name()).expect("attach");
        b.close();
        a.unlink().expect("unlink");
        a.close();
    };
    op(); // starts the resource tracker
    median(sample(BUDGET, 5, 5000, op)) * 1e6
}

/// The floor of [`lifecycle_4k`]: the same system calls made directly, nothing else (no random
/// name, no tracker registration, no checks): open with create, ftruncate, mmap; open, fstat,
/// mmap; munmap and close; unlink; munmap and close.
fn syscalls_once(n: usize) {
    let path = std::ffi::CString::new(format!("/dev/shm/mpbench_floor_{}_{n}", std::process::id()))
        .expect("no NUL in the name");
    let flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let map = |fd: libc::c_int, len: usize| {
        // SAFETY: a fresh shared mapping of `len` bytes of `fd`, unmapped by the caller.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        assert_ne!(map, libc::MAP_FAILED, "mmap");
        map
    };
    // SAFETY: plain system calls on a NUL-terminated path, descriptors and mappings made here.
    unsafe {
        let fd = libc::open(path.as_ptr(), flags | libc::O_CREAT | libc::O_EXCL, 0o600);
        assert!(fd >= 0, "open with create");
        assert_eq!(libc::ftruncate(fd, 4096), 0, "ftruncate");
        let a = map(fd, 4096);
        let fd2 = libc::open(path.as_ptr(), flags);
        assert!(fd2 >= 0, "open");
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd2, &mut st), 0, "fstat");
        let b = map(fd2, st.st_size as usize);
        libc::munmap(b, st.st_size as usize);
        libc::close(fd2);
        assert_eq!(libc::unlink(path.as_ptr()), 0, "unlink");
        libc::munmap(a, 4096);
        libc::close(fd);
    }
}

/// Ours and the system-call floor, interleaved: "ours floor" in us.
fn lifecycle_floor() -> String {
    const BATCH: usize = 100;
    let mut n = 0;
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    while ours.len() < 5 || (start.elapsed() < 2 * BUDGET && ours.len() < 500) {
        let t = std::time::Instant::now();
        for _ in 0..BATCH {
            let a = SharedMemory::create(4096).expect("create");
            let b = SharedMemory::attach(a.name()).expect("attach");
            b.close();
            a.unlink().expect("unlink");
            a.close();
        }
        ours.push(t.elapsed().as_secs_f64() / BATCH as f64);
        let t = std::time::Instant::now();
        for _ in 0..BATCH {
            syscalls_once(n);
            n += 1;
        }
        floor.push(t.elapsed().as_secs_f64() / BATCH as f64);
    }
    format!("{} {}", median(ours) * 1e6, median(floor) * 1e6)
}

/// One element written through the lock of a synchronized `Array<i32>` of 1024.
fn array_write_locked() -> f64 {
    const BATCH: usize = 100_000;
    let arr = Array::<i32>::new(1024).expect("array");
    let op = || {
        for i in 0..BATCH {
            std::hint::black_box(&arr).set(i & 1023, i as i32).expect("set");
        }
    };
    op();
    median(sample(BUDGET, 5, 100_000, op)) / BATCH as f64 * 1e9
}

/// 1024 elements written under one acquisition of the lock (CPython `arr[:] = values`).
fn array_slice_write() -> f64 {
    const BATCH: usize = 1000;
    let arr = Array::<i32>::new(1024).expect("array");
    let values: Vec<i32> = (0..1024).collect();
    let op = || {
        for _ in 0..BATCH {
            std::hint::black_box(&arr).write(0, std::hint::black_box(&values)).expect("write");
        }
    };
    op();
    median(sample(BUDGET, 5, 100_000, op)) / BATCH as f64 * 1e6
}

const SIZE: usize = 256 * 1024 * 1024;
const REPS: usize = 3;

/// The child: writes `SIZE` bytes into the block, stamping the start.
fn writer(shm: SharedMemory, started: RawValue<u64>, done: Event) {
    let src = vec![0x5au8; SIZE];
    started.set(monotonic_ns());
    shm.write_at(0, &src).expect("write");
    done.set();
}

/// A child writes 256 MiB into a fresh block, the parent copies it out into a pre-faulted buffer;
/// MB/s from the child's first write to the parent's last byte.
fn transfer_once(dst: &mut [u8]) -> f64 {
    let shm = SharedMemory::create(SIZE).expect("create");
    let started = RawValue::new(0u64).expect("value");
    let done = Event::new().expect("event");
    let mut child = Process::new(writer, (shm.clone(), started.clone(), done.clone()));
    child.start().expect("start");
    done.wait();
    shm.read_at(0, dst).expect("read");
    let end = monotonic_ns();
    child.join().expect("join");
    shm.unlink().expect("unlink");
    assert!(dst[SIZE - 1] == 0x5a, "the data arrived");
    SIZE as f64 / ((end - started.get()) as f64 / 1e9) / 1e6
}

fn prefaulted() -> Vec<u8> {
    vec![1u8; SIZE]
}

fn transfer_256mib() -> f64 {
    let mut dst = prefaulted();
    median((0..REPS).map(|_| transfer_once(&mut dst)).collect())
}

/// The same bytes moved by plain `memcpy` in one process: into a fresh shared mapping (cold, as
/// the child's write is), then out into a pre-faulted buffer.
fn memcpy_once(src: &[u8], dst: &mut [u8]) -> f64 {
    // SAFETY: a fresh anonymous shared mapping of SIZE bytes, unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED, "mmap");
    let start = monotonic_ns();
    // SAFETY: `map` holds SIZE bytes, `src` and `dst` too; nothing else touches the mapping.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), map.cast::<u8>(), SIZE);
        std::ptr::copy_nonoverlapping(map.cast::<u8>(), dst.as_mut_ptr(), SIZE);
    }
    let end = monotonic_ns();
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(map, SIZE) };
    std::hint::black_box(&dst);
    SIZE as f64 / ((end - start) as f64 / 1e9) / 1e6
}

/// Ours and the memcpy floor, interleaved: "ours floor" in MB/s.
fn transfer_floor() -> String {
    let src = vec![0x5au8; SIZE];
    let mut dst = prefaulted();
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        ours.push(transfer_once(&mut dst));
        floor.push(memcpy_once(&src, &mut dst));
    }
    format!("{} {}", median(ours), median(floor))
}

/// Measures the shared_memory metric `args` names.
pub(crate) fn run(args: &[&str]) -> Option<String> {
    let value = match args {
        ["shm_lifecycle_4k"] => lifecycle_4k(),
        ["shm_array_write_locked"] => array_write_locked(),
        ["shm_array_slice_write"] => array_slice_write(),
        ["shm_transfer_256mib"] => transfer_256mib(),
        ["shm_transfer_floor"] => return Some(transfer_floor()),
        ["shm_lifecycle_floor"] => return Some(lifecycle_floor()),
        _ => return None,
    };
    Some(value.to_string())
}
