//! What a pool task is: a function, how its outcome becomes a value or an error, and how a worker
//! process running the same binary is told which function to call.
//!
//! A task function is a plain `fn` item or a non-capturing closure, exactly as a process target
//! (see `process::target`): for each function type `F` and argument tuple `Args` the compiler makes
//! one monomorphic *chunk entry*, `run_chunk::<F, Args>`, that decodes a chunk of argument tuples,
//! conjures `F` (it has no data) and calls it on each. The parent sends the entry's offset from an
//! anchor; the worker, which runs the same executable (checked when it was launched), adds its own
//! anchor address back. The offset travels only on the private socket pair between a pool and its
//! worker; a transport that crosses machines must sign it (as `sys::SignedFn` signs `fn()`s).

use std::fmt::Display;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, ReturnedError};
use crate::process::target::ArgumentMustBeOwned_UseStringNotStr;
use crate::reduction;
use crate::reduction::packed::{self, PackError, SeqReader, SeqWriter};

/// A chunk entry: decodes a chunk's argument tuples (a packed sequence, see `reduction::packed`;
/// the descriptors they hold come separately), runs the task on each as it is decoded, and appends
/// the packed sequence of results to the buffer; `Err` carries the first failure, and the buffer
/// is then as it was.
pub(crate) type ChunkEntry = fn(&[u8], Vec<OwnedFd>, &mut Vec<u8>) -> Result<(), TaskFailure>;

/// Why a task failed, as it travels from a worker: the message, and the error it returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskFailure {
    pub(crate) message: String,
    pub(crate) returned: Option<ReturnedError>,
}

impl TaskFailure {
    /// A failure known by its message only (a panic, or the worker's own trouble).
    pub(crate) fn message(message: impl Into<String>) -> Self {
        TaskFailure { message: message.into(), returned: None }
    }

    /// The caller's error ([`Error::TaskFailed`]).
    pub(crate) fn into_error(self) -> Error {
        Error::TaskFailed { message: self.message, returned: self.returned }
    }
}

/// A task's error that travels back to the caller as a value, not only as its message: return
/// `Result<T, Typed<E>>` from a task, and [`Error::task_error::<E>()`](crate::Error::task_error)
/// gives the caller its `E` (CPython's `except ZeroDivisionError:` around `get()`). `E` needs
/// serde (`Serialize` in the worker, `Deserialize` in the caller) and `Display` (the message).
///
/// `From<E>` makes `Err(e.into())` and `?` work. A task returning a plain `Result<T, E>` fails
/// with `E`'s message (and type name) only: Rust cannot ask of an arbitrary error type whether it
/// can travel (`io::Error` cannot), so the typed form is chosen in the task's signature.
///
/// ```
/// use multiproc::pool::{Pool, Typed};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Rejected { code: u32 }
///
/// impl std::fmt::Display for Rejected {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "rejected with code {}", self.code)
///     }
/// }
///
/// fn check(x: u32) -> Result<u32, Typed<Rejected>> {
///     if x > 9 { Err(Rejected { code: x }.into()) } else { Ok(x) }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::new(1)?;
/// let error = pool.apply(check, (42,)).unwrap_err();
/// assert_eq!(error.task_error::<Rejected>(), Some(Rejected { code: 42 }));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Typed<E>(pub E);

impl<E> From<E> for Typed<E> {
    fn from(error: E) -> Self {
        Typed(error)
    }
}

impl<E> Typed<E> {
    /// The error inside.
    pub fn into_inner(self) -> E {
        self.0
    }
}

/// The address chunk-entry offsets are measured from.
#[inline(never)]
fn anchor() {}

/// The offset of `entry` from the anchor, valid in any process running the same binary.
pub(crate) fn entry_offset(entry: ChunkEntry) -> i64 {
    crate::sys::offset_between(anchor as fn() as usize, entry as usize)
}

/// Turns an offset made by [`entry_offset`] back into a chunk entry.
///
/// # Safety
///
/// `offset` must come from [`entry_offset`] in a process running the same executable file as this
/// one: the pool's own parent, which launched this worker (the launch protocol checked the
/// executable) and is the only other end of its task connection.
#[allow(unsafe_code, reason = "chunk entry points travel as offsets from an anchor function")]
pub(crate) unsafe fn entry_from_offset(offset: i64) -> ChunkEntry {
    // SAFETY: forwarded from the caller.
    unsafe { crate::sys::function_at::<ChunkEntry>(anchor as fn() as usize, offset) }
}

/// A value a task can return as it is. Implemented for the standard library's value types
/// (numbers, `String`, `Vec`, `Option`, maps, tuples, ...); for a type of your own, add
/// `impl multiproc::pool::TaskValue for MyType {}` (it is a marker: the type still needs serde to
/// travel from a worker process).
///
/// `Result` is deliberately not a `TaskValue`: a task returning `Err` fails, and its error's message
/// comes back from [`AsyncResult::get`](super::AsyncResult::get) as [`Error::TaskFailed`](crate::Error::TaskFailed)
/// (with the value itself for [`Typed`] errors).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task result type",
    label = "a task returns a `TaskValue` (numbers, strings, collections, tuples up to 16, ...) or a `Result<T, E>`",
    note = "for a type of your own, add `impl multiproc::pool::TaskValue for {Self} {{}}` (it also needs serde)",
    note = "for another crate's type, return `Ok::<_, std::convert::Infallible>(value)`: a `Result`'s value needs only serde"
)]
pub trait TaskValue {}

macro_rules! task_values {
    ($($t:ty),* $(,)?) => { $(impl TaskValue for $t {})* };
}

task_values!(
    (),
    bool,
    char,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    f32,
    f64,
    String,
    &'static str,
    std::time::Duration,
    std::time::SystemTime,
    std::path::PathBuf,
    std::ffi::OsString,
    std::net::IpAddr,
    std::net::Ipv4Addr,
    std::net::Ipv6Addr,
    std::net::SocketAddr,
    std::net::SocketAddrV4,
    std::net::SocketAddrV6,
    std::num::NonZeroU8,
    std::num::NonZeroU16,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroU128,
    std::num::NonZeroUsize,
    std::num::NonZeroI8,
    std::num::NonZeroI16,
    std::num::NonZeroI32,
    std::num::NonZeroI64,
    std::num::NonZeroI128,
    std::num::NonZeroIsize,
);

impl<T> TaskValue for Vec<T> {}
impl<T> TaskValue for std::collections::VecDeque<T> {}
impl<T> TaskValue for std::collections::LinkedList<T> {}
impl<T> TaskValue for std::collections::BinaryHeap<T> {}
impl<T> TaskValue for Option<T> {}
impl<T: ?Sized> TaskValue for Box<T> {}
impl<T: ?Sized> TaskValue for std::sync::Arc<T> {}
impl<T: ?Sized + ToOwned> TaskValue for std::borrow::Cow<'static, T> {}
impl<T> TaskValue for std::num::Wrapping<T> {}
impl<T> TaskValue for std::cmp::Reverse<T> {}
impl<T> TaskValue for std::ops::Range<T> {}
impl<T> TaskValue for std::ops::RangeInclusive<T> {}
impl<T> TaskValue for std::ops::Bound<T> {}
impl<T> TaskValue for std::marker::PhantomData<T> {}
impl<T> TaskValue for std::cell::Cell<T> {}
impl<T> TaskValue for std::cell::RefCell<T> {}
impl<T> TaskValue for std::sync::Mutex<T> {}
impl<T> TaskValue for std::sync::RwLock<T> {}
impl<T, const N: usize> TaskValue for [T; N] {}
impl<K, V, S> TaskValue for std::collections::HashMap<K, V, S> {}
impl<K, V> TaskValue for std::collections::BTreeMap<K, V> {}
impl<T, S> TaskValue for std::collections::HashSet<T, S> {}
impl<T> TaskValue for std::collections::BTreeSet<T> {}
impl<T> TaskValue for crate::Handle<T> {}

/// Tuples of 1 to 16 values (serde's limit).
macro_rules! task_value_tuples {
    ($($t:ident),+) => { impl<$($t),+> TaskValue for ($($t,)+) {} };
}

task_value_tuples!(A);
task_value_tuples!(A, B);
task_value_tuples!(A, B, C);
task_value_tuples!(A, B, C, D);
task_value_tuples!(A, B, C, D, E);
task_value_tuples!(A, B, C, D, E, F);
task_value_tuples!(A, B, C, D, E, F, G);
task_value_tuples!(A, B, C, D, E, F, G, H);
task_value_tuples!(A, B, C, D, E, F, G, H, I);
task_value_tuples!(A, B, C, D, E, F, G, H, I, J);
task_value_tuples!(A, B, C, D, E, F, G, H, I, J, K);
task_value_tuples!(A, B, C, D, E, F, G, H, I, J, K, L);
task_value_tuples!(A, B, C, D, E, F, G, H, I, J, K, L, M);
task_value_tuples!(A, B, C, D, E, F, G, H, I, J, K, L, M, N);
task_value_tuples!(A, B, C, D, E, F, G, H, I, J, K, L, M, N, O);
task_value_tuples!(A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P);

/// What a task returns: a [`TaskValue`] (the task succeeded with it), or a `Result` whose `Err`
/// fails the task with the error's message ([`Error::TaskFailed`](crate::Error::TaskFailed)), and
/// with its value for a [`Typed`] error.
pub trait TaskReturn {
    /// The value a successful task delivers.
    type Value;
    /// The value, or why the task failed (implemented by this crate only).
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn into_task_result(self) -> Result<Self::Value, TaskFailure>;
}

impl<T: TaskValue> TaskReturn for T {
    type Value = T;
    #[allow(private_interfaces)]
    fn into_task_result(self) -> Result<T, TaskFailure> {
        Ok(self)
    }
}

impl<T, E: Display> TaskReturn for Result<T, E> {
    type Value = T;
    #[allow(private_interfaces)]
    fn into_task_result(self) -> Result<T, TaskFailure> {
        self.map_err(|e| TaskFailure { message: e.to_string(), returned: Some(ReturnedError::untyped::<E>()) })
    }
}

impl<T, E: Serialize + Display> TaskReturn for Result<T, Typed<E>> {
    type Value = T;
    #[allow(private_interfaces)]
    fn into_task_result(self) -> Result<T, TaskFailure> {
        self.map_err(|Typed(e)| TaskFailure { message: e.to_string(), returned: Some(ReturnedError::typed(&e)) })
    }
}

/// A function a process pool can run with arguments `Args` (a tuple).
///
/// Implemented for every `fn` item and non-capturing closure of up to eight serde arguments
/// returning a [`TaskReturn`] whose value is serde. A capturing closure does not compile; use
/// [`ThreadPool`](super::ThreadPool) for those. Each argument is decoded into a value of its
/// own in the worker, so it cannot borrow: take `String`, not `&str` (the compiler then names
/// the trait `ArgumentMustBeOwned_UseStringNotStr`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a process-pool task with arguments `{Args}`",
    label = "a task is a `fn` item or a closure that captures nothing, taking `{Args}` (owned serde values)",
    note = "a closure that captures: pass the captured values as arguments instead, or use `multiproc::pool::ThreadPool`, whose tasks run on threads and may capture"
)]
pub trait Task<Args>: sealed::TaskFn<Args> + sealed::PoolTaskCapturesNothing {
    /// What the task delivers when it succeeds.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

#[allow(private_interfaces)]
impl<F, Args> Task<Args> for F
where
    F: sealed::TaskFn<Args> + sealed::PoolTaskCapturesNothing,
{
    type Output = <F as sealed::TaskFn<Args>>::Value;
}

/// The monomorphic chunk entry of task `F` with arguments `Args`.
pub(crate) fn entry_of<F: Task<Args>, Args>() -> ChunkEntry {
    run_chunk::<F, Args>
}

// The sealed half names crate-private types; it cannot be named or implemented outside the crate.
#[allow(private_interfaces)]
pub(crate) mod sealed {
    use std::os::fd::OwnedFd;

    use super::TaskFailure;
    use crate::reduction::packed::{SeqReader, SeqWriter};

    /// The crate-private half of [`Task`](super::Task): a function of these arguments.
    pub trait TaskFn<Args> {
        /// The success value.
        type Value: serde::Serialize + serde::de::DeserializeOwned + Send + 'static;
        /// Decodes a whole chunk of argument tuples holding descriptors.
        fn decode_all(args: &[u8], fds: Vec<OwnedFd>) -> Result<Vec<Args>, TaskFailure>;
        /// Decodes the next argument tuple of a chunk.
        fn decode_next(reader: &mut SeqReader<'_>) -> Option<Result<Args, TaskFailure>>;
        /// Calls the function.
        fn call(self, args: Args) -> Result<Self::Value, TaskFailure>;
        /// Calls the function on the values of a chunk of numbers while they take the path of
        /// `packed::map_numbers`, with `calling` set while a call runs (see `task::map_numbers`).
        fn map_numbers(
            self,
            items: &mut SeqReader<'_>,
            results: &mut SeqWriter<'_>,
            calling: &std::cell::Cell<bool>,
        ) -> Result<Option<Self::Value>, TaskFailure>;
    }

    /// A task that captures nothing: a `fn` item or a non-capturing closure (checked as far as
    /// traits can see: `Copy + Send + Sync + 'static`; a closure capturing plain data, say an
    /// integer, passes this and fails when built, at the size check of the task's entry).
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot run in a process pool's worker: a process-pool task must be a `fn` item or a closure that captures nothing",
        label = "this closure captures variables (a task must be `Copy + Send + Sync + 'static` and capture nothing)",
        note = "a worker is another process: it gets the task's arguments, not what a closure captured; pass the captured values as arguments instead (`pool.starmap(f, items.map(|x| (x, offset)))`)",
        note = "or use `multiproc::pool::ThreadPool`, whose tasks run on threads of this process and may capture anything `Send`"
    )]
    pub trait PoolTaskCapturesNothing: Copy + Send + Sync + 'static {}

    #[diagnostic::do_not_recommend]
    impl<F: Copy + Send + Sync + 'static> PoolTaskCapturesNothing for F {}
}

thread_local! {
    /// Where the worker's panic hook leaves the last panic's message and location.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs a panic hook that keeps a task's panic message for its error instead of printing it
/// (CPython ships a task's exception to the parent without printing it in the worker).
pub(crate) fn keep_panic_messages() {
    std::panic::set_hook(Box::new(|info| {
        let message = match info.location() {
            Some(at) => format!("panicked at {at}: {}", payload_text(info.payload())),
            None => format!("panicked: {}", payload_text(info.payload())),
        };
        LAST_PANIC.with(|slot| *slot.borrow_mut() = Some(message));
    }));
}

/// The text of a panic payload (`&str` or `String`; other payloads have none).
pub(crate) fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// Calls `body`, turning a panic into a failure with its message.
pub(crate) fn call_catching<T>(body: impl FnOnce() -> Result<T, TaskFailure>) -> Result<T, TaskFailure> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panic_failure(payload.as_ref())))
}

/// The failure of a task that panicked with `payload`.
fn panic_failure(payload: &(dyn std::any::Any + Send)) -> TaskFailure {
    TaskFailure::message(
        LAST_PANIC
            .with(|slot| slot.borrow_mut().take())
            .unwrap_or_else(|| format!("panicked: {}", payload_text(payload))),
    )
}

/// The rule a pool task's closure breaks when it captures plain data (see `sys::ZstRule`).
struct PoolTaskRule;

impl crate::sys::ZstRule for PoolTaskRule {
    const MESSAGE: &'static str = "a process-pool task must be a fn item or a closure that captures nothing: this \
        closure captures variables (the note below names it), which a worker process cannot receive; pass them as \
        the task's arguments, or use multiproc::pool::ThreadPool, which runs closures that capture";
}

fn run_chunk<F: Task<Args>, Args>(args: &[u8], fds: Vec<OwnedFd>, out: &mut Vec<u8>) -> Result<(), TaskFailure> {
    let start = out.len();
    let ran = run_calls::<F, Args>(args, fds, out);
    if ran.is_err() {
        out.truncate(start);
    }
    ran
}

/// Runs the chunk's calls, encoding each result as it comes (no vector of arguments or results
/// is built, but for arguments holding descriptors, which are decoded together as one message).
fn run_calls<F: Task<Args>, Args>(args: &[u8], fds: Vec<OwnedFd>, out: &mut Vec<u8>) -> Result<(), TaskFailure> {
    let function = crate::sys::conjure_zst_for::<F, PoolTaskRule>();
    if !fds.is_empty() {
        let items = F::decode_all(args, fds)?;
        let mut results = SeqWriter::new(out, items.len());
        for item in items {
            results.push(&call_catching(|| function.call(item))?).map_err(encode_failed)?;
        }
        return results.finish().map_err(encode_failed);
    }
    let mut items = SeqReader::new(args).map_err(|e| decode_failed(&e))?;
    let mut results = SeqWriter::new(out, items.len());
    // The first task's result gives the results' shape; the number loop may run the rest (a
    // chunk of one task, the commonest, has no rest to run).
    if let Some(item) = F::decode_next(&mut items) {
        let item = item?;
        results.push(&call_catching(|| function.call(item))?).map_err(encode_failed)?;
        if items.len() > 0
            && let Some(value) = map_numbers(function, &mut items, &mut results)?
        {
            results.push(&value).map_err(encode_failed)?;
        }
    }
    while let Some(item) = F::decode_next(&mut items) {
        let item = item?;
        results.push(&call_catching(|| function.call(item))?).map_err(encode_failed)?;
    }
    items.finish().map_err(|e| decode_failed(&e))?;
    results.finish().map_err(encode_failed)
}

/// The calls of a chunk of numbers to numbers after the first (whose result gave the results'
/// shape), in one loop under one `catch_unwind` (`packed::map_numbers`); what that loop leaves
/// is the general loop's (a result it could not write comes back to be pushed). The outcome is
/// the general loop's: the chunk fails with the first task that fails or panics (with the panic's
/// message), and a panic outside the task's call (in a value's `Deserialize` or `Serialize`)
/// unwinds on, as it does from the general loop.
fn map_numbers<F: Task<Args>, Args>(
    function: F,
    items: &mut SeqReader<'_>,
    results: &mut SeqWriter<'_>,
) -> Result<Option<<F as sealed::TaskFn<Args>>::Value>, TaskFailure> {
    let calling = std::cell::Cell::new(false);
    let mapped = catch_unwind(AssertUnwindSafe(|| function.map_numbers(items, results, &calling)));
    match mapped {
        Ok(outcome) => outcome,
        Err(payload) if calling.get() => Err(panic_failure(payload.as_ref())),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

fn encode_failed(e: PackError) -> TaskFailure {
    TaskFailure::message(format!(
        "the worker could not encode the task's result ({e}); check the result type's Serialize implementation"
    ))
}

fn decode_failed(e: &dyn Display) -> TaskFailure {
    TaskFailure::message(format!("the worker could not decode the task's arguments: {e}"))
}

macro_rules! impl_task {
    ($($arg:ident),*) => {
        #[allow(private_interfaces)]
        impl<F, R, $($arg,)*> sealed::TaskFn<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> R,
            R: TaskReturn,
            R::Value: Serialize + DeserializeOwned + Send + 'static,
            $($arg: Serialize + for<'de> ArgumentMustBeOwned_UseStringNotStr<'de>,)*
        {
            type Value = R::Value;
            fn decode_all(args: &[u8], fds: Vec<OwnedFd>) -> Result<Vec<($($arg,)*)>, TaskFailure> {
                reduction::decode_packed(args, fds).map_err(|e| decode_failed(&e))
            }
            #[inline(always)]
            fn decode_next(reader: &mut SeqReader<'_>) -> Option<Result<($($arg,)*), TaskFailure>> {
                reader.next().map(|item| item.map_err(|e| decode_failed(&e)))
            }
            #[allow(non_snake_case)]
            fn call(self, args: ($($arg,)*)) -> Result<R::Value, TaskFailure> {
                let ($($arg,)*) = args;
                self($($arg),*).into_task_result()
            }
            #[allow(non_snake_case)]
            #[inline(always)]
            fn map_numbers(
                self,
                items: &mut SeqReader<'_>,
                results: &mut SeqWriter<'_>,
                calling: &std::cell::Cell<bool>,
            ) -> Result<Option<R::Value>, TaskFailure> {
                packed::map_numbers(items, results, |($($arg,)*): ($($arg,)*)| {
                    calling.set(true);
                    let value = self($($arg),*).into_task_result();
                    calling.set(false);
                    value
                })
            }
        }
    };
}

impl_task!();
impl_task!(A1);
impl_task!(A1, A2);
impl_task!(A1, A2, A3);
impl_task!(A1, A2, A3, A4);
impl_task!(A1, A2, A3, A4, A5);
impl_task!(A1, A2, A3, A4, A5, A6);
impl_task!(A1, A2, A3, A4, A5, A6, A7);
impl_task!(A1, A2, A3, A4, A5, A6, A7, A8);

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{ChunkEntry, Task, TaskValue, entry_of};
    use crate::reduction::packed::encode_slice;

    fn entry<F: Task<(A,)>, A>(_: F) -> ChunkEntry {
        entry_of::<F, (A,)>()
    }

    fn packed<T: Serialize>(items: &[T]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_slice(items, &mut out).unwrap();
        out
    }

    /// Runs `entry` on `args` as a worker does, after a byte that must stay.
    fn run(entry: ChunkEntry, args: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = vec![0xaa];
        let ran = entry(args, Vec::new(), &mut out);
        assert_eq!(out[0], 0xaa);
        match ran {
            Ok(()) => Ok(out[1..].to_vec()),
            Err(failure) => {
                assert_eq!(out, [0xaa], "a failed chunk leaves the buffer as it was");
                Err(failure.message)
            }
        }
    }

    fn square(x: u64) -> u64 {
        x * x
    }

    fn half(x: i32) -> f32 {
        x as f32 / 2.0
    }

    #[test]
    fn chunks_of_numbers_give_the_general_paths_bytes() {
        let items: Vec<u64> = (0..1000).collect();
        let squares: Vec<u64> = items.iter().map(|x| x * x).collect();
        assert_eq!(run(entry(square), &packed(&items)).unwrap(), packed(&squares));
        let items: Vec<i32> = (-500..500).collect();
        let halves: Vec<f32> = items.iter().map(|&x| half(x)).collect();
        assert_eq!(run(entry(half), &packed(&items)).unwrap(), packed(&halves));
        assert_eq!(run(entry(square), &packed(&[7u64])).unwrap(), packed(&[49u64]));
        assert_eq!(run(entry(square), &packed::<u64>(&[])).unwrap(), packed::<u64>(&[]));
    }

    fn refuses_13(x: u64) -> u64 {
        if x == 13 {
            panic!("task {x} refuses");
        }
        x
    }

    fn fails_at_13(x: u64) -> Result<u64, String> {
        if x == 13 { Err(format!("task {x} failed")) } else { Ok(x) }
    }

    #[test]
    fn the_first_task_that_fails_or_panics_fails_the_chunk() {
        let items: Vec<u64> = (0..100).collect();
        let panicked = run(entry(refuses_13), &packed(&items)).unwrap_err();
        assert!(panicked.contains("task 13 refuses"), "{panicked}");
        let failed = run(entry(fails_at_13), &packed(&items)).unwrap_err();
        assert_eq!(failed, "task 13 failed");
        // The first task of a chunk (the general loop's) fails it alike.
        let panicked = run(entry(refuses_13), &packed(&items[13..])).unwrap_err();
        assert!(panicked.contains("task 13 refuses"), "{panicked}");
        assert_eq!(run(entry(fails_at_13), &packed(&items[13..])).unwrap_err(), "task 13 failed");
        assert_eq!(run(entry(refuses_13), &packed(&items[14..])).unwrap(), packed(&items[14..]));
    }

    /// A number until 5, text from there on: the results' sequence turns postcard midway.
    struct Shifty(u64);

    impl Serialize for Shifty {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                0..5 => s.serialize_u64(self.0),
                _ => s.serialize_str("big"),
            }
        }
    }

    impl<'de> Deserialize<'de> for Shifty {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u64::deserialize(d).map(Shifty)
        }
    }

    impl TaskValue for Shifty {}

    fn shifty(x: u64) -> Shifty {
        Shifty(x)
    }

    /// Reads a `u64`, panicking at 7 (a panic outside the task's call).
    struct PanicsAt7(u64);

    impl<'de> Deserialize<'de> for PanicsAt7 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let x = u64::deserialize(d)?;
            assert_ne!(x, 7, "argument 7 does not decode");
            Ok(PanicsAt7(x))
        }
    }

    impl Serialize for PanicsAt7 {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(self.0)
        }
    }

    fn unwrap_7(x: PanicsAt7) -> u64 {
        x.0
    }

    #[test]
    fn values_off_the_number_path_go_the_general_way() {
        let items: Vec<u64> = (0..10).collect();
        let shifted: Vec<Shifty> = items.iter().map(|&x| Shifty(x)).collect();
        assert_eq!(run(entry(shifty), &packed(&items)).unwrap(), packed(&shifted));
        // Arguments of another kind than the task reads: the general reader's error.
        let narrow: Vec<u32> = (0..10).collect();
        let wrong = run(entry(square), &packed(&narrow)).unwrap_err();
        assert!(wrong.contains("could not decode the task's arguments"), "{wrong}");
        // A panic in an argument's `Deserialize` is not the task's: it unwinds on, as from the
        // general loop (the worker dies, and the pool fails the chunk it was running).
        let args = packed(&items);
        let unwound = std::panic::catch_unwind(|| run(entry(unwrap_7), &args));
        assert!(unwound.is_err());
        assert_eq!(run(entry(unwrap_7), &packed(&items[..7])).unwrap(), packed(&items[..7]));
    }
}
