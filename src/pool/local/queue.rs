//! The local runner's front: the queue the pool's handles fill and the scheduler's thread
//! drains, with the pool's state. Submitting takes a lock and, only when the scheduler sleeps,
//! rings its wake-up socket.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use std::sync::Arc;

use super::super::scheduler::{Chunk, Chunks, RunState, Runner, Watch};
use super::transport::Wake;
use crate::error::{Error, Result};

pub(super) struct Inner {
    /// Calls' chunks not yet taken by the scheduler.
    pub(super) queue: VecDeque<Chunks>,
    pub(super) state: RunState,
    pub(super) cancel_queued: bool,
    /// Look for revoked chunks among the running ones.
    pub(super) recheck: bool,
    /// The scheduler is (about to be) blocked in `wait`: a submitter must wake it.
    pub(super) sleeping: bool,
    /// A descriptor the scheduler watches for someone else ([`Runner::watch`]).
    pub(super) watch: Option<Arc<dyn Watch>>,
}

pub(super) struct LocalQueue {
    inner: Mutex<Inner>,
    wake: Wake,
}

impl LocalQueue {
    pub(super) fn new(wake: Wake) -> LocalQueue {
        let inner = Inner {
            queue: VecDeque::new(),
            state: RunState::Running,
            cancel_queued: false,
            recheck: false,
            sleeping: false,
            watch: None,
        };
        LocalQueue { inner: Mutex::new(inner), wake }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn wake(&self) -> &Wake {
        &self.wake
    }

    fn wake_scheduler(&self, inner: &mut Inner) {
        if inner.sleeping {
            inner.sleeping = false;
            self.wake.ring();
        }
    }

    fn push(&self, chunks: impl IntoIterator<Item = Chunks>) -> Result<()> {
        let mut inner = self.lock();
        match &inner.state {
            RunState::Running => {}
            RunState::Broken(reason) => {
                return Err(Error::InvalidState(format!("Pool not running: it is broken ({reason})")));
            }
            _ => return Err(Error::InvalidState("Pool not running: it was closed or terminated".into())),
        }
        inner.queue.extend(chunks);
        self.wake_scheduler(&mut inner);
        Ok(())
    }

    /// Moves to `state` unless already terminated (closing a terminated pool changes nothing).
    pub(super) fn set_state(&self, state: RunState) {
        let mut inner = self.lock();
        if inner.state == RunState::Running || state == RunState::Terminated {
            inner.state = state;
        }
        self.wake_scheduler(&mut inner);
    }
}

impl Runner for LocalQueue {
    fn submit(&self, chunks: Vec<Chunk>) -> Result<()> {
        self.push(chunks.into_iter().map(Chunks::single))
    }

    fn submit_chunks(&self, chunks: Chunks) -> Result<()> {
        self.push([chunks])
    }

    fn set_state(&self, state: RunState) {
        LocalQueue::set_state(self, state);
    }

    fn state(&self) -> RunState {
        self.lock().state.clone()
    }

    fn cancel_queued(&self) {
        let mut inner = self.lock();
        inner.cancel_queued = true;
        self.wake_scheduler(&mut inner);
    }

    fn recheck_running(&self) {
        let mut inner = self.lock();
        inner.recheck = true;
        self.wake_scheduler(&mut inner);
    }

    fn watch(&self, watch: Arc<dyn Watch>) -> bool {
        let mut inner = self.lock();
        inner.watch = Some(watch);
        self.wake_scheduler(&mut inner);
        true
    }
}
