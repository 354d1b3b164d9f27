//! Queue conformance (conformance.md C1 `_TestQueue`, C2 `TestSimpleQueue`, and the queue items of
//! A and B), plus what the port adds: many producers and consumers in processes and threads,
//! big items and descriptors, producers and consumers killed with `SIGKILL` at random points.
//!
//! Cases with child processes are written once (`common/queue_suite.rs`, `queue_suite!`) and run
//! here under the forkserver and spawn start methods, and under fork by `tests/queue_fork.rs`.
//!
//! Q-11 becomes: `put` encodes before anything is queued and returns the error (there is no feeder
//! thread to stop, and so no `_on_queue_feeder_error` hook: Q-12)., SQ-02 and SQ-03
//! (using a closed queue) cannot be written: `close` takes the handle (see the `compile_fail`
//! example of `Queue::close`). Q-09 is about Python's import lock, and CTX-06 about a fork-context
//! `SemLock` that spawn refuses: queues here work with every start method (the suite runs under
//! all three).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::{Error, JoinableQueue, Queue, SimpleQueue};

macro_rules! case {
    ($method:expr, $name:ident) => {
        #[test]
        fn $name() {
            let ctx = multiproc::Context::new($method);
            crate::common::watchdog(stringify!($name), 60, || crate::common::queue_suite::$name(ctx));
        }
    };
}

mod forkserver {
    macro_rules! forkserver_case {
        ($name:ident) => {
            case!(multiproc::StartMethod::ForkServer, $name);
        };
    }
    crate::queue_suite!(forkserver_case);
}

mod spawn {
    macro_rules! spawn_case {
        ($name:ident) => {
            case!(multiproc::StartMethod::Spawn, $name);
        };
    }
    crate::queue_suite!(spawn_case);
}

const SHORT: Duration = Duration::from_millis(100);

// on an empty queue the non-blocking gets fail at once with Empty, a timed get after
// its timeout.
#[test]
fn get_on_an_empty_queue() {
    common::watchdog("get_on_an_empty_queue", 10, || {
        let queue: Queue<u32> = Queue::new().unwrap();
        let start = Instant::now();
        assert!(matches!(queue.get_nowait(), Err(Error::Empty)));
        assert!(start.elapsed() < SHORT);
        let start = Instant::now();
        assert!(matches!(queue.get_timeout(Duration::from_millis(200)), Err(Error::Empty)));
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(matches!(queue.get_timeout(Duration::ZERO), Err(Error::Empty)));
    });
}

// qsize follows puts and gets.
#[test]
fn qsize_follows_puts_and_gets() {
    let queue: Queue<u32> = Queue::new().unwrap();
    let mut sizes = vec![queue.qsize()];
    queue.put(5).unwrap();
    sizes.push(queue.qsize());
    queue.put(6).unwrap();
    sizes.push(queue.qsize());
    queue.get().unwrap();
    sizes.push(queue.qsize());
    queue.get().unwrap();
    sizes.push(queue.qsize());
    assert_eq!(sizes, [0, 1, 2, 1, 0]);
    assert_eq!(queue.maxsize(), 0);
    assert!(!queue.full());
}

// CPython's unbounded queue buffers every item until readers come. An unbounded queue whose ring
// is used up spills into its memory file: put never waits, nothing is reordered, and the queue
// runs through the ring again once drained.
#[test]
fn an_unbounded_queue_spills_beyond_its_ring() {
    common::watchdog("an_unbounded_queue_spills_beyond_its_ring", 30, || {
        let queue: Queue<(u32, Vec<u8>)> = Queue::with_capacity(0, 4096).unwrap();
        // Inline records, and big items (over a quarter of the ring) that fill the side channel.
        let item = |i: u32| match i % 1000 {
            0 => (i, vec![i as u8; 150_000]),
            _ => (i, vec![i as u8; [100, 7, 900, 2000][i as usize % 4]]),
        };
        for round in 0..2 {
            for i in 0..6000 {
                queue.put_nowait(item(i)).unwrap_or_else(|e| panic!("round {round}, item {i}: {e}"));
            }
            assert_eq!(queue.qsize(), 6000);
            for i in 0..6000 {
                assert_eq!(queue.get_nowait().unwrap(), item(i), "round {round}");
            }
            assert!(queue.empty());
        }
        // Interleaved: a backlog beyond the ring that consumers keep draining while puts go on.
        let mut next = 0;
        for i in 0..9000 {
            queue.put_nowait(item(i)).unwrap();
            if i % 3 == 0 {
                assert_eq!(queue.get_nowait().unwrap(), item(next));
                next += 1;
            }
        }
        while next < 9000 {
            assert_eq!(queue.get_nowait().unwrap(), item(next));
            next += 1;
        }
        assert!(queue.empty());
    });
}

// A bounded queue blocks exactly at maxsize, however many of its items the ring holds: small items
// beyond a small ring, and big items (over a quarter of the ring) beyond what the descriptor side
// channel holds (some 270).
#[test]
fn a_bounded_queue_blocks_exactly_at_maxsize() {
    common::watchdog("a_bounded_queue_blocks_exactly_at_maxsize", 30, || {
        let small: Queue<Vec<u8>> = Queue::with_capacity(50, 4096).unwrap();
        let big: Queue<Vec<u8>> = Queue::with_capacity(400, 64 << 10).unwrap();
        for (queue, len, maxsize) in [(&small, 1000, 50), (&big, 20 << 10, 400)] {
            for i in 0..maxsize {
                queue.put_nowait(vec![i as u8; len]).unwrap_or_else(|e| panic!("item {i} of {maxsize}: {e}"));
            }
            assert!(queue.full());
            assert!(matches!(queue.put_nowait(vec![0; len]), Err(Error::Full)));
            assert!(matches!(queue.put_timeout(vec![0; len], SHORT), Err(Error::Full)));
            assert_eq!(queue.get().unwrap(), vec![0; len]);
            queue.put_nowait(vec![9; len]).unwrap();
            for i in 1..maxsize {
                assert_eq!(queue.get_nowait().unwrap(), vec![i as u8; len]);
            }
            assert_eq!(queue.get_nowait().unwrap(), vec![9; len]);
        }
    });
}

// The one limit an unbounded queue keeps: items holding descriptors wait in the side channel's
// socket buffer (some 270 of them); a put beyond waits for a consumer and says Full when its
// timeout passes, naming the limit.
#[test]
fn items_holding_descriptors_wait_for_room_in_the_side_channel() {
    common::watchdog("items_holding_descriptors_wait_for_room_in_the_side_channel", 30, || {
        type Item = (u32, Option<multiproc::Handle<std::fs::File>>, Vec<u8>);
        let queue: Queue<Item> = Queue::with_capacity(0, 64 << 10).unwrap();
        let file = || Some(multiproc::Handle::new(std::fs::File::open("/proc/self/exe").unwrap()));
        let mut put = 0;
        let refused = loop {
            match queue.put_nowait((put, file(), Vec::new())) {
                Ok(()) => put += 1,
                Err(e) => break e,
            }
            assert!(put < 100_000, "no limit reached");
        };
        assert!(matches!(refused, Error::Full), "{refused}");
        assert!(refused.to_string().contains("descriptors"), "the error names the limit: {refused}");
        assert!(put >= 100, "only {put} items with descriptors fit");
        // Big items (over a quarter of the ring) without descriptors still go in (to the spill):
        // the limit is descriptors only.
        for i in put..put + 300 {
            queue.put_nowait((i, None, vec![i as u8; 20 << 10])).unwrap();
        }
        assert!(matches!(queue.put_timeout((0, file(), Vec::new()), SHORT), Err(Error::Full)));
        for i in 0..put + 300 {
            let (n, handle, bytes) = queue.get_nowait().unwrap();
            assert_eq!((n, handle.is_some(), bytes.len()), (i, i < put, if i < put { 0 } else { 20 << 10 }));
        }
        queue.put_nowait((0, file(), Vec::new())).unwrap();
    });
}

// The ring wraps around many times, with records of every size, padding included.
#[test]
fn the_ring_wraps_with_records_of_every_size() {
    let queue: Queue<Vec<u8>> = Queue::with_capacity(0, 4096).unwrap();
    for round in 0..2000usize {
        let item = vec![round as u8; round % 300];
        queue.put(&item).unwrap();
        assert_eq!(queue.get().unwrap(), item);
    }
    assert!(queue.empty());
}

// Blocked gets wake up when an item comes, blocked puts when room comes; threads of one process
// share a queue by cloning it, many producers and many consumers, each producer's order kept.
#[test]
fn threads_share_a_queue() {
    common::watchdog("threads_share_a_queue", 30, || {
        let queue: Queue<(u32, u32)> = Queue::with_maxsize(4).unwrap();
        let producers: Vec<_> = (0..4)
            .map(|id| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        queue.put((id, i)).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(item) = queue.get_timeout(Duration::from_secs(2)) {
                        got.push(item);
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all = Vec::new();
        for c in consumers {
            let got = c.join().unwrap();
            for id in 0..4 {
                let mine: Vec<u32> = got.iter().filter(|(p, _)| *p == id).map(|(_, i)| *i).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {id} out of order");
            }
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(all, (0..4).flat_map(|id| (0..5000).map(move |i| (id, i))).collect::<Vec<_>>());
    });
}

// A get blocked on an empty queue is woken by a put from another thread.
#[test]
fn a_blocked_get_is_woken_by_a_put() {
    common::watchdog("a_blocked_get_is_woken_by_a_put", 10, || {
        let queue: Arc<Queue<String>> = Arc::new(Queue::with_maxsize(1).unwrap());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let getter = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                tid_tx.send(common::sync_suite::gettid()).unwrap();
                queue.get().unwrap()
            })
        };
        // Once the getter sleeps in the kernel (on the queue's futex, after its spin), put.
        common::sync_suite::wait_until_thread_asleep(tid_rx.recv().unwrap());
        queue.put("wake up".to_string()).unwrap();
        assert_eq!(getter.join().unwrap(), "wake up");
    });
}

// JoinableQueue: task_done more times than items taken is an error; join returns at once when
// nothing is unfinished, and times out while something is.
#[test]
fn task_done_counts_items_taken() {
    common::watchdog("task_done_counts_items_taken", 10, || {
        let queue: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        queue.join().unwrap();
        assert!(matches!(queue.task_done(), Err(Error::InvalidState(_))));
        queue.put(1).unwrap();
        queue.put(2).unwrap();
        assert!(matches!(queue.task_done(), Err(Error::InvalidState(_))), "nothing taken yet");
        assert!(matches!(queue.join_timeout(SHORT), Err(Error::Timeout(_))));
        queue.get().unwrap();
        queue.task_done().unwrap();
        assert!(matches!(queue.task_done(), Err(Error::InvalidState(_))));
        queue.get().unwrap();
        queue.task_done().unwrap();
        queue.join_timeout(SHORT).unwrap();
    });
}

// A handle received as another kind of queue, or with another item type, is refused.
#[test]
fn a_queue_of_another_kind_is_refused() {
    let queue: Queue<u32> = Queue::new().unwrap();
    let (mut a, mut b) = multiproc::pipe().unwrap();
    a.send(&queue).unwrap();
    assert!(b.recv::<Queue<String>>().is_err());
    a.send(&queue).unwrap();
    assert!(b.recv::<JoinableQueue<u32>>().is_err());
    a.send(&queue).unwrap();
    let same: Queue<u32> = b.recv().unwrap();
    same.put(3).unwrap();
    assert_eq!(queue.get().unwrap(), 3);
    let simple: SimpleQueue<u32> = SimpleQueue::new().unwrap();
    a.send(&simple).unwrap();
    assert!(b.recv::<Queue<u32>>().is_err());
}

// A queue sent through a queue arrives working.
#[test]
fn a_queue_travels_through_a_queue() {
    let outer: Queue<Queue<u32>> = Queue::new().unwrap();
    let inner: Queue<u32> = Queue::new().unwrap();
    outer.put(&inner).unwrap();
    let received = outer.get().unwrap();
    received.put(9).unwrap();
    assert_eq!(inner.get().unwrap(), 9);
}

// Nothing stays behind: no descriptor of this process leaks through puts and gets of big items
// and items with descriptors. Counted in a child process of its own: the other tests of this
// binary open and close descriptors in parallel threads.
#[test]
fn no_descriptor_leaks() {
    let mut child = multiproc::Process::new(count_descriptors_around_puts_and_gets, ());
    child.start().unwrap();
    assert_eq!(
        child.join_timeout(std::time::Duration::from_secs(60)).unwrap(),
        Some(0),
        "descriptors leaked (see the child's output)"
    );
}

fn count_descriptors_around_puts_and_gets() {
    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }
    let queue: Queue<(Vec<u8>, Option<multiproc::Handle<std::fs::File>>)> = Queue::new().unwrap();
    let warm = |queue: &Queue<_>| {
        for _ in 0..3 {
            queue.put((vec![0u8; 200_000], None)).unwrap();
            queue.put((vec![], Some(multiproc::Handle::new(std::fs::File::open("/proc/self/exe").unwrap())))).unwrap();
            // A big item holding a descriptor: its memory file and its descriptor travel together.
            queue
                .put((vec![1u8; 300_000], Some(multiproc::Handle::new(std::fs::File::open("/proc/self/exe").unwrap()))))
                .unwrap();
            queue.get().unwrap();
            queue.get().unwrap();
            let (bytes, handle) = queue.get().unwrap();
            assert!(bytes == vec![1u8; 300_000] && handle.is_some());
        }
    };
    warm(&queue);
    let before = open_fds();
    warm(&queue);
    assert_eq!(open_fds(), before);
}

// SQ-04 (and Q-13's "close on an unused queue"): closing the last handle releases everything the
// queue holds (its descriptors and its mapping), for each kind of queue, used or not. In a child
// of its own, as above.
#[test]
fn closing_the_last_handle_releases_the_queue() {
    let mut child = multiproc::Process::new(count_resources_around_close, ());
    child.start().unwrap();
    assert_eq!(
        child.join_timeout(std::time::Duration::from_secs(60)).unwrap(),
        Some(0),
        "a closed queue kept something (see the child's output)"
    );
}

fn count_resources_around_close() {
    fn held() -> (usize, usize) {
        let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        (fds, maps.lines().filter(|l| l.contains("memfd:multiproc")).count())
    }
    let before = held();
    let unused: SimpleQueue<u32> = SimpleQueue::new().unwrap();
    unused.close();
    let simple: SimpleQueue<String> = SimpleQueue::new().unwrap();
    let other = simple.clone();
    simple.put("both ends".to_string()).unwrap();
    assert_eq!(other.get().unwrap(), "both ends");
    let queue: Queue<u32> = Queue::with_maxsize(2).unwrap();
    queue.put(1).unwrap();
    let joinable: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    joinable.put(2).unwrap();
    assert_eq!(joinable.get().unwrap(), 2);
    joinable.task_done().unwrap();
    assert_ne!(held(), before, "the queues hold nothing to release");
    simple.close();
    other.close();
    queue.close();
    joinable.close();
    assert_eq!(held(), before, "(descriptors, mappings) before and after closing");
}

/// An item whose encoding fails (Python: an unpicklable object).
#[derive(Debug, serde::Deserialize)]
enum Item {
    Fine(u32),
    Broken,
}

impl serde::Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Item::Fine(n) => serializer.serialize_newtype_variant("Item", 0, "Fine", n),
            Item::Broken => Err(serde::ser::Error::custom("this item cannot be encoded")),
        }
    }
}

// an item that cannot be encoded is refused by its put (CPython: the feeder thread reports
// it later); it takes no place in the queue, and the queue keeps working.
#[test]
fn an_item_that_cannot_be_encoded_is_refused_by_put() {
    let queue: Queue<Item> = Queue::with_maxsize(1).unwrap();
    assert!(matches!(queue.put(Item::Broken), Err(Error::Codec { .. })));
    assert!(queue.empty());
    queue.put(Item::Fine(1)).unwrap();
    assert_eq!(queue.qsize(), 1);
    assert!(matches!(queue.get().unwrap(), Item::Fine(1)));
    assert!(queue.empty());
}

// A backlog of megabytes in the default ring, drained, then more: the positions restart at the
// beginning when the queue empties, and items keep their order across the restart.
#[test]
fn a_large_backlog_drains_and_the_queue_starts_over() {
    let queue: Queue<(u32, Vec<u8>)> = Queue::new().unwrap();
    for round in 0..3u32 {
        for i in 0..20_000 {
            queue.put((i, vec![round as u8; 100])).unwrap();
        }
        assert_eq!(queue.qsize(), 20_000);
        for i in 0..20_000 {
            assert_eq!(queue.get_nowait().unwrap(), (i, vec![round as u8; 100]));
        }
        assert!(queue.empty());
    }
}
