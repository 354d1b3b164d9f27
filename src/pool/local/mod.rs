//! The local runner: a pool's worker processes on this machine, behind the [`Runner`] seam.
//!
//! Three parts, each behind its own boundary:
//! * `queue`: what the pool's handles call (the [`Runner`] implementation): a locked queue of
//!   submitted [`Chunks`](super::scheduler::Chunks) and the pool's state, and the wake-up of a
//!   sleeping scheduler;
//! * `scheduler`: the policy, on one thread: which chunks go to which worker and when, what a
//!   death or a timeout means, retries, outcomes into the sinks;
//! * `transport`: how chunks reach a worker process and come back (processes, socket pairs, the
//!   shared-memory word naming the running chunk, pidfds, `poll`), and the worker's side of it
//!   (`pool::worker`). The scheduler knows workers only as `transport::Link`s.
//!
//! # Closing
//!
//! Once a closed pool's queue is drained, the scheduler sends every worker `Stop` (all before it
//! waits for any), hands the workers to the queue (`LocalQueue::hand_over`) and ends. `Pool::join`
//! (or the last handle's drop) then waits for all of them at once on their pidfds and reaps them
//! (`transport::reap`); a detached pool (an executor's `shutdown(wait = false)`) is reaped by the
//! scheduler itself. A worker leaves right after `Stop` without dropping its connection and
//! buffers (its exit releases them). What stays on `join`'s way is one wake-up of the scheduler,
//! one of each worker, each worker's exit in the kernel (unmapping its address space, 0.1-0.15 ms
//! on the VM of `bench/README.md`) and one wake-up of the joiner.
//!
//! # The parent's cost per task (issue 17, many cores)
//!
//! The parent must not be the bottleneck of a pool: with 16 workers and tiny tasks sent one per
//! chunk, 4 million tasks a second leave the parent 250 ns per task. Before this design, a chunk
//! was an object from end to end: the caller encoded each into its own buffer and queued a
//! `Chunk`; the scheduler kept one record and one tracing span per chunk in flight, encoded a
//! header per chunk, decoded each result into a buffer of its own and delivered it alone (a lock
//! per chunk in the result's collector), and the caller concatenated a vector per chunk. Measured
//! on 2 cores (`mpbench pool_parent_cpu 1`): 254-260 ns of the scheduler thread and 84-89 ns of
//! the caller per task, a ceiling of 2.9M tasks/s whatever the number of workers.
//!
//! Now the unit of everything the parent does is a *run* of consecutive chunks:
//! * the front encodes a whole call's arguments into one buffer, chunk after chunk, with their
//!   ends (`Chunks`): one allocation per call, not per chunk, and none for a large call, which
//!   takes the pool's spare buffer (`SpareArgs`, given back when the chunks are done: a fresh
//!   megabyte faulted its pages in whenever the allocator had trimmed the heap between calls);
//! * the scheduler queues slices of it and cuts a worker's window off the front slice: one
//!   record, one id range and one group header per slice sent, whatever its length; the
//!   arguments are copied into the batch message with one copy per slice, or, from 16 KiB, not
//!   at all: the message's records gather them from the call's buffer;
//! * a worker answers a run of successes as one reply (results back to back, with their ends);
//!   the scheduler checks it against the slice it sent and hands the sink the run as borrowed
//!   bytes, which the sink decodes into one vector per run (one lock per run in the collector),
//!   for a `map` straight into its result vector when the run is the next due (`vector_for`),
//!   so that the values are not copied again when the last chunk is in;
//! * values that are plain numbers (or tuples, structs of them) travel as fixed-width records
//!   (`reduction::packed`): decoding one is a checked copy, not a varint;
//! * buffers are kept from message to message on both sides, so large messages do not fault
//!   their pages in again each time.
//!
//! What remains per task in the parent is the decoding of its result into the caller's vector
//! and the arguments' encoding; per message, a `poll`, a receive and a send, shared by up to
//! [`MAX_WINDOW`](scheduler) tasks. `bench/README.md` has the measurements and the model of
//! what this predicts at 16 workers.

mod queue;
mod scheduler;
mod transport;

use std::sync::Arc;

pub(crate) use self::scheduler::Scheduler;
pub(crate) use self::transport::Initializer;
use super::scheduler::{Runner, Shared, Stats};
use crate::context::StartMethod;
use crate::error::Result;

/// How a pool starts its workers.
pub(crate) struct WorkerConfig {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) initializer: Option<Initializer>,
}

/// Creates the pool's shared state and a scheduler with `config.processes` started workers (run
/// it on a thread of its own with [`Scheduler::run`]).
///
/// # Errors
///
/// A worker that could not start (the ones started before it are killed and reaped).
pub(crate) fn start(config: WorkerConfig) -> Result<(Arc<Shared>, Scheduler)> {
    let queue = Arc::new(queue::LocalQueue::new(transport::Wake::new()?));
    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared::new(Arc::clone(&queue) as Arc<dyn Runner>, Arc::clone(&stats)));
    let scheduler = Scheduler::new(queue, stats, config)?;
    Ok((shared, scheduler))
}

/// Describes an exit code the way a person reads it.
pub(crate) fn describe_exit(code: i32) -> String {
    if code < 0 {
        let name = match -code {
            1 => "SIGHUP",
            2 => "SIGINT",
            3 => "SIGQUIT",
            4 => "SIGILL",
            6 => "SIGABRT",
            7 => "SIGBUS",
            8 => "SIGFPE",
            9 => "SIGKILL",
            11 => "SIGSEGV",
            13 => "SIGPIPE",
            15 => "SIGTERM",
            _ => "a signal",
        };
        format!("killed by signal {} ({name})", -code)
    } else {
        format!("exited with code {code}")
    }
}
