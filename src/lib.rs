//! # multiproc
//!
//! Python's `multiprocessing`, in Rust: run functions in child processes as easily as in threads,
//! for crash and timeout isolation, for killing a hung task, for C libraries that are not
//! thread-safe, and for memory that must go back to the system.
//!
//! ```no_run
//! use multiproc::Process;
//!
//! fn worker(n: u32) {
//!     println!("worker {n} in process {}", std::process::id());
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let mut children: Vec<Process> = (0..10).map(|n| Process::new(worker, (n,))).collect();
//!     for child in &mut children {
//!         child.start()?;
//!     }
//!     for child in &mut children {
//!         assert_eq!(child.join()?, 0);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! No registration and no boilerplate: a target is any `fn` item or closure that captures nothing,
//! with serde arguments. The child never runs your `main` a second time: the crate takes over a
//! spawned child before `main` (see [`bootstrap`]).
//!
//! ## Coming from Python
//!
//! | Python | Rust |
//! |---|---|
//! | `Process(target=f, args=(a, b))` | [`Process::new(f, (a, b))`](Process::new) |
//! | `Process(target=f, name=..., daemon=True)` | [`Process::new(f, args).with_name(..).with_daemon(true)`](Process::with_name) |
//! | subclass of `Process` with `run()` | a type implementing [`Run`], [`Process::from_run`] |
//! | `p.start()`, `p.join()`, `p.join(timeout)` | [`start`](Process::start), [`join`](Process::join) (returns the exit code), [`join_timeout`](Process::join_timeout) |
//! | `p.is_alive()`, `p.pid`, `p.exitcode` | [`is_alive`](Process::is_alive), [`pid`](Process::pid), [`exitcode`](Process::exitcode) |
//! | `p.terminate()`, `p.kill()`, `p.interrupt()`, `p.close()` | [`terminate`](Process::terminate), [`kill`](Process::kill), [`interrupt`](Process::interrupt), [`close`](Process::close) |
//! | `p.sentinel`, `multiprocessing.connection.wait` | [`sentinel`](Process::sentinel), [`wait`] |
//! | `current_process()`, `parent_process()` | [`current_process`], [`parent_process`] |
//! | `active_children()`, `cpu_count()` | [`active_children`], [`cpu_count`] |
//! | `get_context('spawn')`, `set_start_method`, `get_start_method`, `get_all_start_methods` | [`get_context`], [`set_start_method`], [`get_start_method`], [`get_all_start_methods`] |
//! | start methods `'forkserver'`, `'spawn'`, `'fork'` | [`StartMethod`] |
//! | a closure under `fork` | [`Process::fork`] |
//! | passing a socket or file to a child (`reduction`, `DupFd`) | [`Handle`] |
//! | `freeze_support()`, `if __name__ == '__main__':` | nothing; [`bootstrap`] only for unusual link set-ups |
//! | `Pipe()`, `Pipe(duplex=False)` | [`pipe`], [`simplex_pipe`] (directions in the type: [`connection::ReadOnly`], [`connection::WriteOnly`]); [`socket_pipe`] for a bare socket pair |
//! | `conn.send(obj)`, `conn.recv()` | [`Connection::send`], [`Connection::recv`] (serde values); [`send_pickle`](Connection::send_pickle), [`recv_pickle`](Connection::recv_pickle) for Python peers |
//! | `send_bytes(buf, offset, size)`, `recv_bytes(maxlength)`, `recv_bytes_into(buf, offset)` | [`send_bytes(&buf[offset..offset + size])`](Connection::send_bytes), [`recv_bytes`](Connection::recv_bytes), [`recv_bytes_max`](Connection::recv_bytes_max), [`recv_bytes_into(&mut buf[offset..])`](Connection::recv_bytes_into) |
//! | `conn.poll(timeout)`, `close()`, `closed`, `readable`, `writable`, `fileno()` | [`poll`](Connection::poll), [`close`](Connection::close), [`closed`](Connection::closed), [`readable`](Connection::readable), [`writable`](Connection::writable), [`fd`](Connection::fd) |
//! | `Listener(address, authkey=...)`, `accept()`, `last_accepted` | [`connection::Listener::bind`], [`accept`](connection::Listener::accept), [`accept_timeout`](connection::Listener::accept_timeout), [`last_accepted`](connection::Listener::last_accepted) |
//! | `Client(address, authkey=...)` | [`connection::connect`], [`connection::connect_timeout`] |
//! | addresses `('host', port)`, `'/path'`, `'\0name'` | [`connection::Address`] (`Tcp`, `Unix`, `Abstract`; parsed from `"host:port"`, `"/path"`, `"@name"`) |
//! | `deliver_challenge`, `answer_challenge` | [`connection::deliver_challenge`], [`connection::answer_challenge`] |
//! | `EOFError`, `BufferTooShort`, `AuthenticationError` | [`Error::Eof`], [`Error::BufferTooShort`], [`Error::Authentication`] |
//! | `Lock()`, `RLock()`; `with lock:`; `acquire(block, timeout)`, `release()` | [`Lock`], [`RLock`]; the guard of [`Lock::acquire`]; [`try_acquire`](Lock::try_acquire), [`acquire_timeout`](Lock::acquire_timeout); dropping the guard |
//! | a lock whose holder died (CPython: waits forever) | [`sync::AcquireError::OwnerDied`], [`sync::OwnerDied::recover`] |
//! | `Semaphore(n)`, `BoundedSemaphore(n)`, `get_value()` | [`Semaphore`], [`BoundedSemaphore`], [`value`](Semaphore::value) |
//! | `Event()`: `set`, `clear`, `is_set`, `wait(timeout)` | [`Event`]: [`set`](Event::set), [`clear`](Event::clear), [`is_set`](Event::is_set), [`wait_timeout`](Event::wait_timeout) |
//! | `Condition(lock)`: `wait`, `wait_for`, `notify(n)`, `notify_all` | [`Condition`]: [`wait`](Condition::wait), [`wait_for`](Condition::wait_for), [`notify`](Condition::notify), [`notify_all`](Condition::notify_all) |
//! | `Barrier(parties)`: `wait`, `abort`, `reset`, `broken`, `n_waiting`; `BrokenBarrierError` | [`Barrier`]; [`Error::BrokenBarrier`] |
//! | `shared_memory.SharedMemory(create=True, size=n)`, `SharedMemory(name)` | [`SharedMemory::create`], [`SharedMemory::create_named`], [`SharedMemory::attach`] |
//! | `shm.buf`, `shm.name`, `shm.size`, `close()`, `unlink()` | [`bytes`](SharedMemory::bytes) (atomics), [`read_at`](SharedMemory::read_at)/[`write_at`](SharedMemory::write_at), [`name`](SharedMemory::name), [`size`](SharedMemory::size), [`close`](SharedMemory::close), [`unlink`](SharedMemory::unlink) |
//! | `SharedMemory(..., track=False)`, `resource_tracker.unregister(...)` | [`SharedMemory::options`]`.track(false)`, [`untrack`](SharedMemory::untrack); attaching never tracks (gh-82300) |
//! | `ShareableList(seq)`, `ShareableList(name=...)`; `sl[i]`, `sl[i] = v`, `count`, `index`, `format`, `sl.shm` | [`ShareableList::new`], [`ShareableList::attach`]; [`get`](ShareableList::get), [`set`](ShareableList::set), [`count`](ShareableList::count), [`index`](ShareableList::index), [`format`](ShareableList::format), [`shm`](ShareableList::shm); items are [`shm::Item`] |
//! | `Value('d', 1.0)`, `v.value`, `with v.get_lock(): v.value += 1`, `get_obj()` | [`Value::new`], [`get`](Value::get)/[`set`](Value::set), [`update`](Value::update) or [`acquire`](Value::acquire), [`get_obj`](Value::get_obj) |
//! | `Array('i', [1, 2, 3])`, `Array('i', 10)`, `arr[i]`, `arr[a:b]`, `arr[a:b] = seq`, `get_lock()` | [`Array::from_slice`], [`Array::new`], [`get`](Array::get)/[`set`](Array::set), [`read`](Array::read), [`write`](Array::write), [`get_lock`](Array::get_lock), [`acquire`](Array::acquire) |
//! | `Value(..., lock=False)`, `RawValue`, `RawArray` | [`RawValue`], [`RawArray`] (atomic cells: [`cell`](RawValue::cell), [`cells`](RawArray::cells)) |
//! | typecodes `'b' 'B' 'h' 'H' 'i' 'I' 'q' 'Q' 'f' 'd'` | `i8 u8 i16 u16 i32 u32 i64 u64 f32 f64` ([`shm::Element`]) |
//! | `class P(Structure): _fields_ = [...]`; `Value(P, ...)`, `RawValue(P, ...)` | [`structure!`] declares it; [`SharedStruct`] ([`get`](SharedStruct::get)/[`set`](SharedStruct::set)/[`update`](SharedStruct::update) whole under the lock), [`RawStruct`] (field by field, atomic) |
//! | `Array('c', b'hello')`, `arr.value`, `arr.value = b'...'` | [`Array<u8>`](Array): [`value`](Array::value), [`set_value`](Array::set_value) (NUL-terminated; too long is [`Error::StringTooLong`]); the same on [`RawArray<u8>`](RawArray::value) |
//! | `sharedctypes.copy(obj)` | `copy()`: [`RawValue::copy`], [`RawArray::copy`], [`RawStruct::copy`]; [`Value::copy`], [`Array::copy`], [`SharedStruct::copy`] (with a new lock) |
//! | `Queue()`, `Queue(maxsize)`, `SimpleQueue()`, `JoinableQueue()`, `JoinableQueue(maxsize)` | [`Queue::new`], [`Queue::with_maxsize`], [`SimpleQueue::new`], [`JoinableQueue::new`], [`JoinableQueue::with_maxsize`] (serde items; see [`queue`]); no `Default` (creating a queue can fail) |
//! | an unbounded queue buffers every item `put` until readers come (the feeder thread) | the same without a feeder thread: items beyond the shared ring spill into the queue's memory file, and stay there if the producer exits; the one limit left: items holding descriptors, some 270 waiting (the side channel's socket buffer), then `put` waits ([`Queue::put`]) |
//! | `q.put(obj, block, timeout)`, `put_nowait`; `q.get(block, timeout)`, `get_nowait` | [`put`](Queue::put), [`put_timeout`](Queue::put_timeout), [`put_nowait`](Queue::put_nowait); [`get`](Queue::get), [`get_timeout`](Queue::get_timeout), [`get_nowait`](Queue::get_nowait) |
//! | `queue.Full`, `queue.Empty` | [`Error::Full`], [`Error::Empty`] |
//! | `qsize()`, `empty()`, `full()`, `close()`, `join_thread()`, `cancel_join_thread()` | [`qsize`](Queue::qsize), [`empty`](Queue::empty), [`full`](Queue::full), [`close`](Queue::close) (takes the handle), [`join_thread`](Queue::join_thread) and [`cancel_join_thread`](Queue::cancel_join_thread) (no feeder thread: nothing to wait for) |
//! | `task_done()`, `join()` | [`JoinableQueue::task_done`], [`JoinableQueue::join`], [`join_timeout`](JoinableQueue::join_timeout) |
//! | `ProcessError`, `ValueError` from a process | [`Error`] |
//! | `Manager()`, `with Manager() as m:`, `m.shutdown()` | [`Manager::start`](BaseManager::start), dropping it, [`shutdown`](BaseManager::shutdown) |
//! | `m.dict()`, `m.list(seq)`, `m.Namespace()`, `m.Value(tc, v)`, `m.Array(tc, seq)` | [`dict`](manager::ManagerClient::dict), [`list`](manager::ManagerClient::list), [`namespace`](manager::ManagerClient::namespace), [`value`](manager::ManagerClient::value), [`array`](manager::ManagerClient::array): typed proxies ([`manager::DictProxy`], ...); [`manager::Value`] for mixed types |
//! | proxies: `l[a:b]`, `l[a:b] = seq`, `del l[a:b]`, `l.sort()`, `l *= n`; `d.popitem()`, `d \| other`; `s \| t`, `s &= t`, `s.issubset(t)` | [`get_slice`](manager::ListProxy::get_slice) ([`manager::Slice`]), [`set_slice`](manager::ListProxy::set_slice), [`delete_slice`](manager::ListProxy::delete_slice), [`sort`](manager::ListProxy::sort), [`repeat`](manager::ListProxy::repeat); [`pop_item`](manager::DictProxy::pop_item), [`union`](manager::DictProxy::union); [`union`](manager::SetProxy::union), [`intersection_update`](manager::SetProxy::intersection_update), [`is_subset`](manager::SetProxy::is_subset) |
//! | `m.Queue()`, `m.JoinableQueue()`, `queue.LifoQueue`, `queue.PriorityQueue` | [`queue`](manager::ManagerClient::queue), [`joinable_queue`](manager::ManagerClient::joinable_queue), [`lifo_queue`](manager::ManagerClient::lifo_queue), [`priority_queue`](manager::ManagerClient::priority_queue) |
//! | `m.Lock()`, `m.RLock()`, `m.Semaphore(n)`, `m.BoundedSemaphore(n)`, `m.Condition()`, `m.Event()`, `m.Barrier(n)` | [`lock`](manager::ManagerClient::lock), [`rlock`](manager::ManagerClient::rlock), [`semaphore`](manager::ManagerClient::semaphore), [`bounded_semaphore`](manager::ManagerClient::bounded_semaphore), [`condition`](manager::ManagerClient::condition), [`event`](manager::ManagerClient::event), [`barrier`](manager::ManagerClient::barrier) |
//! | `BaseManager.register('Maths', MathsClass)`, `manager.Maths()` | `#[`[`managed`]`]` on `impl MathsClass`, [`BaseManager::<(MathsClass,)>`](BaseManager), [`create(MathsClass)`](manager::ManagerClient::create) |
//! | `BaseManager(address, authkey).get_server().serve_forever()` | [`manager::Server::bind`], [`serve_forever`](manager::Server::serve_forever); in a child: [`BaseManager::start_at`] |
//! | `BaseManager(address, authkey).connect()`, `register('get_queue', callable=...)` | [`manager::ManagerClient::connect`], [`named("queue").queue()`](manager::ManagerClient::named) |
//! | `RemoteError` (an exception in the manager's server) | [`Error::Remote`] |
//! | `register('get_queue', callable=lambda: queue)` on a server, the queue filled before `serve_forever()` | [`Server::client`](manager::Server::client) makes and fills it, [`Server::register`](manager::Server::register) names it; Python's `register('get_queue')` and Rust's [`named("get_queue")`](manager::ManagerClient::named) reach it |
//! | CPython's `BaseManager`/`SyncManager` clients of a server written in Rust | [`manager::Server`] serves them unchanged, on the same address as Rust clients ([`mixing`]) |
//! | `pickle.dumps(x)`, `pickle.loads(b)`; `int` of any size, `set`, `datetime`, `Decimal`, `UUID` | [`pickle::to_vec`], [`pickle::from_slice`]; [`pickle::PickleValue`] (feature `pickle`) |
//! | a CPython manager from another language: `BaseManager(address, authkey).connect()`, `m.get_queue()`, `proxy._callmethod(name, args)`; its exceptions | [`manager::cpython::PyManager::connect`], [`create("get_queue", ())`](manager::cpython::PyManager::create), [`PyProxy::call`](manager::cpython::PyProxy::call) ([`PyQueue`](manager::cpython::PyQueue), [`PyDict`](manager::cpython::PyDict)); [`Error::PythonException`] (feature `pickle`) |
//! | `manager.start(initializer, initargs)` | [`BaseManager::start_with_initializer`] |
//! | `SharedMemoryManager()`, `smm.SharedMemory(size)`, `smm.ShareableList(seq)`, `smm.shutdown()` | [`SharedMemoryManager::start`], [`shared_memory`](manager::SharedMemoryClient::shared_memory), [`shareable_list`](manager::SharedMemoryClient::shareable_list), [`shutdown`](SharedMemoryManager::shutdown) or dropping it (unlinks every block) |
//! | `Pool(processes, initializer, initargs, maxtasksperchild, context)`; `with Pool() as p:` | [`Pool::new`], [`Pool::builder`] ([`initializer`](pool::PoolBuilder::initializer), [`max_tasks_per_child`](pool::PoolBuilder::max_tasks_per_child), [`context`](pool::PoolBuilder::context)); dropping the pool and every result from it terminates it (results hold the pool) |
//! | `Pool()`, `ThreadPool()`, `ProcessPoolExecutor()` (cpu_count workers); `repr(pool)` | [`Pool::with_cpu_count`], [`ThreadPool::with_cpu_count`], [`Executor::with_cpu_count`] (or `Pool::builder().build()`); `Display`: `<multiprocessing.pool.Pool state=RUN pool_size=4>` |
//! | a pool worker's name: `ForkPoolWorker-3`, `SpawnPoolWorker-3`, `ForkServerPoolWorker-3`; a `Process` subclass instance's: `MyProcess-1` | the same names from [`current_process().name()`](current_process) in a worker; [`Process::from_run`] names the process after the [`Run`] type (`Greeter-1`) |
//! | `p.apply(f, args)`, `p.apply_async(f, args, callback, error_callback)` | [`Pool::apply`], [`Pool::apply_async`], [`Pool::apply_async_with`] + [`pool::Options`] |
//! | `p.map(f, it, chunksize)`, `map_async`, `starmap`, `starmap_async` | [`Pool::map`], [`Pool::map_async_with`], [`Pool::starmap`], [`Pool::starmap_async`] |
//! | `p.imap(f, it, chunksize)`, `imap_unordered`; `next(timeout)` | [`Pool::imap`], [`Pool::imap_unordered`] ([`pool::Imap`], [`next_timeout`](pool::Imap::next_timeout)); lazy as CPython's (a feeder thread reads the input, so it must be `Send + 'static`), with a bounded read-ahead ([`Options::buffersize`](pool::Options::buffersize)) |
//! | `p.close()`, `p.terminate()`, `p.join()` | [`close`](Pool::close), [`terminate`](Pool::terminate), [`join`](Pool::join) |
//! | `AsyncResult`: `get(timeout)`, `wait`, `ready`, `successful` | [`AsyncResult`]: [`get`](AsyncResult::get), [`get_timeout`](AsyncResult::get_timeout), [`wait`](AsyncResult::wait), [`ready`](AsyncResult::ready), [`successful`](AsyncResult::successful); `.await` |
//! | a task's exception re-raised by `get()` | [`Error::TaskFailed`] (a panic's message or an `Err`'s) |
//! | a function as a value: `(mul, (i, 7))` on a queue, a function passed as an argument, `func.__name__` | [`Function`]: `Function::new(mul)` travels in a [`Queue`], a [`Connection`] or as an argument and is called with [`call`](Function::call) in any process of the same binary (checked on arrival: same program, same executable, same signature); [`name`](Function::name). Example: `examples/mp_workers.rs` |
//! | `except ZeroDivisionError:` around `get()` (the task's own exception type) | the task returns `Result<T, Typed<E>>` ([`pool::Typed`]); [`err.task_error::<E>()`](Error::task_error) gives the `E` back (panics and worker deaths stay crate errors) |
//! | a worker killed mid-task (CPython's `Pool` hangs; `BrokenProcessPool`) | [`Error::WorkerDied`] for that task only; the worker is replaced |
//! | a task that never returns | [`PoolBuilder::task_timeout`](pool::PoolBuilder::task_timeout), [`Options::timeout`](pool::Options::timeout): [`Error::TaskTimedOut`] |
//! | `multiprocessing.pool.ThreadPool`, `multiprocessing.dummy.Pool` | [`ThreadPool`] (capturing closures) |
//! | `concurrent.futures.ProcessPoolExecutor`: `submit`, `map`, `shutdown(wait, cancel_futures)`; `Future.result`, `done`, `cancel` | [`Executor`]; [`AsyncResult`] ([`get_timeout`](AsyncResult::get_timeout), [`ready`](AsyncResult::ready), [`cancel`](AsyncResult::cancel)) |
//! | a client that stops halfway through `Listener.accept()`'s handshake (CPython: blocks every later client) | handshakes run side by side: [`set_handshake_timeout`](connection::Listener::set_handshake_timeout) (default [`connection::DEFAULT_HANDSHAKE_TIMEOUT`]), [`set_max_pending_handshakes`](connection::Listener::set_max_pending_handshakes) |
//! | a barrier party killed (CPython: threads only) | while it waits or inside the barrier's internal state: withdrawn (the state is repaired), its restarted replacement takes its place; killed inside the action: every waiter gets [`Error::BrokenBarrier`] promptly |
//! | Ray's `ray.util.multiprocessing.Pool`, Celery/RQ workers on other hosts | the same [`Pool`]: `Pool::builder().cluster("redis://...")` (`cluster` feature; see `multiproc::cluster`), nodes run the same binary with `MULTIPROC_WORKER` set |
//!
//! ## Start methods
//!
//! The default is the fork server, as in CPython 3.14 on Linux: a small single-threaded process,
//! started on first use, forks each child. It is fast and safe in multi-threaded programs. `spawn`
//! starts a fresh execution of the program; `fork` forks the caller and is the only method that
//! can run capturing closures (refused while the caller has several threads). See [`context`].
//!
//! ## Values and resources
//!
//! Arguments travel as serde values (postcard). Open files, sockets and other descriptors travel
//! inside them wrapped in [`Handle`] and arrive open in the child. See [`reduction`] for the design.
//!
//! ## Connections
//!
//! [`pipe`] gives two connected [`Connection`]s; give one to a child as an argument. Small
//! messages between the two ends travel through shared memory, tens of times faster than
//! CPython's pipes. Messages are serde values or raw bytes, framed exactly as CPython frames them
//! on sockets, so [`connection::Listener`]
//! and [`connection::connect`] talk to CPython's `Listener` and `Client`, authkey handshake
//! included (see [`connection`]).
//!
//! ## Pools
//!
//! [`Pool`] runs tasks (fn items or non-capturing closures, as process targets) in worker
//! processes, with CPython's API and without its hangs: a worker that dies fails only its task
//! ([`Error::WorkerDied`]) and is replaced, a task over its timeout is killed, a panicking callback
//! is contained. [`ThreadPool`] has the same methods for capturing closures, [`Executor`] the
//! `concurrent.futures` interface. See [`pool`].

//! ## Shared memory
//!
//! [`Value`] and [`Array`] put numbers in anonymous shared memory, behind a lock, and travel to
//! children as arguments. [`SharedMemory`] is a named block in `/dev/shm`, the same object CPython's
//! `SharedMemory` creates, and [`ShareableList`] is CPython's list in its exact layout: a Rust and a
//! Python process share them by name. A resource tracker unlinks the blocks that crashed creators
//! left behind. See [`shm`].
//!
//! ## Mixing Python and Rust
//!
//! Python programs and Rust programs of this crate work together unchanged on both sides:
//! connections carry CPython's pickles ([`pickle`]: every Python value round-trips, or is refused
//! naming its class), a manager's [`Server`](manager::Server) serves CPython's `BaseManager`
//! clients and this crate's proxies on one address with the same objects, and Rust clients use
//! CPython's managers ([`manager::cpython`]). The guide, with the mapping of types and what
//! shared memory ownership means when Python attaches: [`mixing`].

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
// Library code does not panic: invariants are proven by construction, failures are `Result`s.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![deny(unsafe_op_in_unsafe_fn)]
// `unsafe` lives in the platform layer (`sys`) and the shared-memory internals; each module or
// item that needs it says so with `#[allow(unsafe_code)]` and why (see "Unsafe code" in README.md).
#![deny(unsafe_code)]

pub mod connection;
pub mod context;
mod deadline;
mod error;
pub mod manager;
#[cfg(feature = "pickle")]
pub mod mixing;
#[cfg(feature = "pickle")]
pub mod pickle;
#[cfg(not(feature = "pickle"))]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod pickle;
pub mod pool;
mod process;
pub mod queue;
pub mod reduction;
pub mod shm;
pub mod sync;
#[allow(unsafe_code, reason = "the platform layer: system calls, mappings, fork")]
mod sys;
#[cfg(test)]
mod test_support;
mod wait;

pub use connection::{Connection, pipe, simplex_pipe, socket_pipe};
pub use context::{
    Context, StartMethod, cpu_count, default_context, get_all_start_methods, get_context, get_start_method,
    peek_start_method, set_start_method,
};
pub use error::{Error, Result, ReturnedError};
pub use manager::SharedMemoryManager;
pub use manager::{BaseManager, Manager};
/// Exposes a type's methods to manager proxies (see [`manager::Managed`]).
pub use multiproc_derive::managed;
#[cfg(feature = "cluster")]
pub use pool::cluster;
pub use pool::{AsyncResult, Executor, Pool, ThreadPool};
pub use process::bootstrap::bootstrap;
pub use process::children::{ActiveChild, active_children};
pub use process::identity::{CurrentProcess, ParentProcess, current_process, parent_process};
pub use process::{ExitReport, Function, IntoFunction, Process, Run, Target};
#[cfg(not(loom))]
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use reduction::Handle;
pub use shm::ShmSafe;
pub use shm::{Array, RawArray, RawValue, ShareableList, SharedMemory, Value};
pub use shm::{RawStruct, SharedStruct};
pub use sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
pub use wait::{Waitable, wait};

/// Serde helpers for fields that hold file descriptors: `#[serde(with = "multiproc::handle")]`.
pub mod handle {
    pub use crate::reduction::handle::{deserialize, serialize};
}

/// Hooks for this crate's own test suite; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::connection::fuzz_hooks as fuzz;
    #[cfg(feature = "pickle")]
    pub use crate::manager::cpython::reply::fuzz_reply as fuzz_cpython_manager_reply;
    pub use crate::manager::server::fuzz_python_request as fuzz_manager_python_request;
    pub use crate::manager::server::fuzz_request as fuzz_manager_request;
    #[cfg(feature = "pickle")]
    pub use crate::pickle::fuzz_pickle;
    #[cfg(feature = "cluster")]
    pub use crate::pool::cluster::fuzz_feed as fuzz_cluster_feed;
    pub use crate::pool::fuzz_pool_messages;
    pub use crate::process::launch::test_hooks;
    pub use crate::process::start::forkserver::server_pid as forkserver_pid;
    pub use crate::process::start::forkserver::server_reports_exits as forkserver_reports_exits;
    pub use crate::shm::tracker::tracker_pid as shm_tracker_pid;
}
