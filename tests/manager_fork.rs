//! Managers and the fork start method: a proxy (and the manager) captured by a closure in a forked
//! child. The child must not talk on its parent's connection (it opens its own, with its own
//! reference) and must not stop the parent's server when its copy of the manager is dropped.
//!
//! Forking is only safe from a single-threaded process, so this target has no libtest harness;
//! `alarm` is the watchdog.

mod common;

use std::sync::Arc;

use multiproc::{Manager, Process};

fn main() {
    let mut harness = common::ForkHarness::from_args();
    harness.run("proxies_and_manager_in_forked_children", proxies_and_manager_in_forked_children);
    harness.finish();
}

fn proxies_and_manager_in_forked_children() {
    let manager = Manager::start().expect("start a manager");
    let d = manager.dict::<u32, String>().expect("dict");
    d.insert(&0, &"parent".into()).expect("insert");
    // The closures capture the parent's own proxy and manager (shared through `Arc`), as a forked
    // child inherits them; the children drop their copies when they end.
    let d = Arc::new(d);
    let manager = Arc::new(manager);
    let mut children: Vec<Process> = (1..=3u32)
        .map(|i| {
            let (d, manager) = (Arc::clone(&d), Arc::clone(&manager));
            Process::fork(move || -> multiproc::Result<()> {
                for _ in 0..50 {
                    d.insert(&i, &format!("child {i}"))?;
                    assert_eq!(d.get(&0)?.as_deref(), Some("parent"));
                }
                manager.object_count()?;
                drop(manager);
                Ok(())
            })
        })
        .collect();
    for c in &mut children {
        c.start().expect("fork a child");
    }
    // The parent keeps using its own connection meanwhile.
    for _ in 0..50 {
        assert_eq!(d.get(&0).expect("get").as_deref(), Some("parent"));
    }
    for c in &mut children {
        assert_eq!(c.join().expect("join"), 0, "a forked child failed");
    }
    assert_eq!(d.len().expect("len"), 4);
    assert_eq!(manager.object_count().expect("count"), 1, "the children's references went with them");
    // The children's copies of the parent's control connection (the pipe the server was started
    // with) were dropped in them; the parent's still stops the server as asked.
    drop(children);
    let mut manager = Arc::try_unwrap(manager).expect("the children's copies are gone");
    manager.shutdown().expect("shutdown");
    assert_eq!(manager.server_exitcode(), Some(0), "the server stopped as asked, it was not killed");
}
