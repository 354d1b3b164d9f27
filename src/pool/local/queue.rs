//! The local runner's front: the queue the pool's handles fill and the scheduler's thread
//! drains, with the pool's state. Submitting takes a lock and, only when the scheduler sleeps,
//! rings its wake-up socket.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use std::sync::Arc;

use super::super::scheduler::{Chunk, Chunks, RunState, Runner, Watch};
use super::scheduler::STOP_GRACE;
use super::transport::{self, Exiting, Wake};
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
    /// Nobody will join the pool ([`Runner::detach`]): the scheduler reaps its workers itself.
    detached: bool,
    /// Workers told to stop, handed over by the scheduler as it ended, for `join` to reap.
    exiting: Vec<Exiting>,
    /// Workers reaped by `join`: what they held is released with the pool.
    ended: Vec<Exiting>,
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
            detached: false,
            exiting: Vec::new(),
            ended: Vec::new(),
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

    /// The scheduler's last act after a close: keeps `workers` (told to stop) for the pool's
    /// `join` or `Drop` to reap ([`Runner::reap_stopped`]), or gives them back when nobody will.
    pub(super) fn hand_over(&self, workers: Vec<Exiting>) -> Option<Vec<Exiting>> {
        let mut inner = self.lock();
        if inner.detached {
            return Some(workers);
        }
        inner.exiting.extend(workers);
        None
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

    fn detach(&self) {
        self.lock().detached = true;
    }

    fn reap_stopped(&self) {
        let exiting = std::mem::take(&mut self.lock().exiting);
        if !exiting.is_empty() {
            let ended = transport::reap(exiting, STOP_GRACE);
            self.lock().ended.extend(ended);
        }
    }
}
