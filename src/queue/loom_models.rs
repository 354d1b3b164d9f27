//! Model checks of the queue's wake-up protocol (`wakeup`) with loom, on the faithful futex of
//! `sync::loom_models`: a lost wake-up shows as a deadlock. The item count stands in for the
//! ring: as in the real queue, a producer commits, then bumps, and a consumer reads the word,
//! then the producers' tail (here the count).
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --lib queue::loom_models`.

use std::sync::atomic::Ordering;

use loom::sync::Arc;

use super::wakeup::Sleep;
use crate::sync::atomic::{AtomicU32, AtomicU64};
use crate::sync::loom_models::LoomFutex;

#[derive(Default)]
struct Model {
    items: AtomicU32,
    word: AtomicU32,
    waiters: AtomicU32,
    need: AtomicU64,
}

impl Model {
    fn sleep(&self) -> Sleep<'_> {
        Sleep { word: &self.word, waiters: &self.waiters, need: &self.need }
    }

    fn put(&self) {
        self.items.fetch_add(1, Ordering::SeqCst);
        self.word.fetch_add(1, Ordering::SeqCst);
        self.sleep().wake::<LoomFutex>();
    }

    fn get(&self) {
        loop {
            let seq = self.word.load(Ordering::SeqCst);
            let items = self.items.load(Ordering::SeqCst);
            if items > 0 {
                if self.items.compare_exchange(items, items - 1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    return;
                }
                continue;
            }
            self.sleep().sleep::<LoomFutex>(seq, None);
        }
    }
}

#[test]
fn a_consumer_gets_every_item_of_a_burst() {
    loom::model(|| {
        let queue = Arc::new(Model::default());
        let producer = {
            let queue = queue.clone();
            loom::thread::spawn(move || {
                queue.put();
                queue.put();
            })
        };
        queue.get();
        queue.get();
        producer.join().unwrap();
        assert_eq!(queue.items.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn two_consumers_share_a_burst() {
    loom::model(|| {
        let queue = Arc::new(Model::default());
        let consumer = {
            let queue = queue.clone();
            loom::thread::spawn(move || queue.get())
        };
        let producer = {
            let queue = queue.clone();
            loom::thread::spawn(move || {
                queue.put();
                queue.put();
            })
        };
        queue.get();
        consumer.join().unwrap();
        producer.join().unwrap();
        assert_eq!(queue.items.load(Ordering::SeqCst), 0);
    });
}
