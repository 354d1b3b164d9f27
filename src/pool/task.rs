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
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Serialize, de::DeserializeOwned};

use crate::reduction::{self, Message};

/// A chunk entry: decodes a chunk of argument tuples, runs the task on each and appends the
/// encoded `Vec` of results to the buffer; `Err` carries the first failure's message.
pub(crate) type ChunkEntry = fn(Message, &mut Vec<u8>) -> Result<(), String>;

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
/// comes back from [`AsyncResult::get`](super::AsyncResult::get) as [`Error::TaskFailed`](crate::Error::TaskFailed).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task result type",
    label = "return a `TaskValue` or a `Result<T, E>` from the task",
    note = "for a type of your own, add `impl multiproc::pool::TaskValue for {Self} {{}}`"
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
    std::path::PathBuf,
);

impl<T> TaskValue for Vec<T> {}
impl<T> TaskValue for std::collections::VecDeque<T> {}
impl<T> TaskValue for Option<T> {}
impl<T> TaskValue for Box<T> {}
impl<T, const N: usize> TaskValue for [T; N] {}
impl<K, V, S> TaskValue for std::collections::HashMap<K, V, S> {}
impl<K, V> TaskValue for std::collections::BTreeMap<K, V> {}
impl<T, S> TaskValue for std::collections::HashSet<T, S> {}
impl<T> TaskValue for std::collections::BTreeSet<T> {}
impl<T> TaskValue for crate::Handle<T> {}
impl<A, B> TaskValue for (A, B) {}
impl<A, B, C> TaskValue for (A, B, C) {}
impl<A, B, C, D> TaskValue for (A, B, C, D) {}
impl<A, B, C, D, E> TaskValue for (A, B, C, D, E) {}

/// What a task returns: a [`TaskValue`] (the task succeeded with it), or a `Result` whose `Err`
/// fails the task with the error's message.
pub trait TaskReturn {
    /// The value a successful task delivers.
    type Value;
    /// The value, or the failure's message.
    fn into_task_result(self) -> Result<Self::Value, String>;
}

impl<T: TaskValue> TaskReturn for T {
    type Value = T;
    fn into_task_result(self) -> Result<T, String> {
        Ok(self)
    }
}

impl<T, E: Display> TaskReturn for Result<T, E> {
    type Value = T;
    fn into_task_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// A function a process pool can run with arguments `Args` (a tuple).
///
/// Implemented for every `fn` item and non-capturing closure of up to six serde arguments returning
/// a [`TaskReturn`] whose value is serde. A capturing closure does not compile; use
/// [`ThreadPool`](super::ThreadPool) for those.
pub trait Task<Args>: sealed::TaskFn<Args> + Copy + Send + Sync + 'static {
    /// What the task delivers when it succeeds.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

#[allow(private_interfaces)]
impl<F, Args> Task<Args> for F
where
    F: sealed::TaskFn<Args> + Copy + Send + Sync + 'static,
{
    type Output = <F as sealed::TaskFn<Args>>::Value;
}

// The sealed half names crate-private types; it cannot be named or implemented outside the crate.
#[allow(private_interfaces)]
pub(crate) mod sealed {
    /// The crate-private half of [`Task`](super::Task).
    pub trait TaskFn<Args> {
        /// The success value.
        type Value: serde::Serialize + serde::de::DeserializeOwned + Send + 'static;
        /// The monomorphic chunk entry for this function and argument types.
        fn entry() -> super::ChunkEntry;
        /// Calls the function.
        fn call(self, args: Args) -> Result<Self::Value, String>;
    }
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

/// Calls `body`, turning a panic into its message.
pub(crate) fn call_catching<T>(body: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => Err(LAST_PANIC
            .with(|slot| slot.borrow_mut().take())
            .unwrap_or_else(|| format!("panicked: {}", payload_text(payload.as_ref())))),
    }
}

fn run_chunk<F, Args>(args: Message, out: &mut Vec<u8>) -> Result<(), String>
where
    F: sealed::TaskFn<Args> + Copy,
    Args: DeserializeOwned,
{
    let items: Vec<Args> =
        reduction::decode(args).map_err(|e| format!("the worker could not decode the task's arguments: {e}"))?;
    let function = crate::sys::conjure_zst::<F>();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        results.push(call_catching(|| function.call(item))?);
    }
    // About the encoded size, so that encoding does not grow the buffer step by step.
    out.reserve(8 + results.len() * std::mem::size_of::<<F as sealed::TaskFn<Args>>::Value>());
    *out = postcard::to_extend(&results, std::mem::take(out)).map_err(|e| {
        format!("the worker could not encode the task's result ({e}); check the result type's Serialize implementation")
    })?;
    Ok(())
}

macro_rules! impl_task {
    ($($arg:ident),*) => {
        #[allow(private_interfaces)]
        impl<F, R, $($arg,)*> sealed::TaskFn<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> R + Copy + Send + Sync + 'static,
            R: TaskReturn,
            R::Value: Serialize + DeserializeOwned + Send + 'static,
            $($arg: Serialize + DeserializeOwned,)*
        {
            type Value = R::Value;
            fn entry() -> ChunkEntry {
                run_chunk::<F, ($($arg,)*)>
            }
            #[allow(non_snake_case)]
            fn call(self, args: ($($arg,)*)) -> Result<R::Value, String> {
                let ($($arg,)*) = args;
                self($($arg),*).into_task_result()
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
