//! Shared memory under the fork start method: a forked child has a resource-tracker client of its
//! own (its registrations are not its parent's), and a tracked block passes to a forked child as an
//! argument. Forking needs a single-threaded parent, so this target has no libtest harness; `alarm(2)`
//! is the watchdog.

mod common;

use std::path::Path;

use multiproc::{Context, Event, SharedMemory, StartMethod};

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// In a forked child: creates a tracked block of its own, reports it and its tracker, waits.
fn create_in_child(outbox: common::Outbox, go: Event) {
    let shm = SharedMemory::create(64).unwrap();
    let tracker = multiproc::__private::shm_tracker_pid().unwrap_or(0);
    common::send(&outbox, &format!("{} {tracker}", shm.name()));
    go.wait_timeout(std::time::Duration::from_secs(20));
}

/// A forked child killed with a block it created leaves nothing behind, and its death does not
/// touch the blocks its parent created before the fork.
fn a_forked_child_tracks_its_own_blocks(ctx: Context) {
    let parents = SharedMemory::create(64).unwrap();
    let parent_tracker = multiproc::__private::shm_tracker_pid().unwrap();
    let (inbox, outbox) = common::channel();
    let go = Event::new().unwrap();
    let mut child = ctx.process(create_in_child, (outbox, go.clone()));
    child.start().unwrap();
    let message = inbox.recv(10);
    let (name, tracker) = message.split_once(' ').unwrap();
    let tracker: i32 = tracker.parse().unwrap();
    assert!(tracker > 0 && tracker != parent_tracker, "the child started a tracker of its own");
    child.kill().unwrap();
    child.join().unwrap();
    assert!(common::wait_for_exit_of(tracker, 10), "the child's tracker did not exit");
    assert!(!exists(name), "the child's block was left behind");
    assert!(exists(parents.name()), "the parent's block must stay");
    parents.unlink().unwrap();
}

fn write_and_exit(shm: SharedMemory) {
    assert!(shm.is_tracked());
    shm.write_at(0, b"forked").unwrap();
}

/// A tracked block given to a forked child as an argument arrives mapped and tracked.
fn a_block_travels_to_a_forked_child(ctx: Context) {
    let shm = SharedMemory::create(64).unwrap();
    let mut child = ctx.process(write_and_exit, (shm.clone(),));
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), 0);
    assert_eq!(&shm.to_vec()[..6], b"forked");
    assert!(exists(shm.name()), "the child's end does not unlink a block its parent holds");
    shm.unlink().unwrap();
}

fn main() {
    let ctx = Context::new(StartMethod::Fork);
    let mut harness = common::ForkHarness::from_args();
    harness.run("a_forked_child_tracks_its_own_blocks", || a_forked_child_tracks_its_own_blocks(ctx));
    harness.run("a_block_travels_to_a_forked_child", || a_block_travels_to_a_forked_child(ctx));
    harness.finish();
}
