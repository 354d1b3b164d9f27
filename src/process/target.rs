//! What a child runs, and how the parent names it to a child that does not share its memory.
//!
//! A target is a plain `fn` item or a non-capturing closure: a zero-sized type whose behaviour is
//! entirely in its code. For each target type `F` and argument tuple `A` the compiler makes one
//! monomorphic *entry* function, `run_fn::<F, A>`, that decodes `A`, conjures `F` (possible because
//! it has no data) and calls it. The parent sends the entry's address as an offset from a fixed
//! anchor function; a child running the same binary adds its own anchor address back. The same
//! binary is checked before any entry is called (see `bootstrap`), so the offset always lands on the
//! intended function; no registration is needed and nothing in the user's program changes.
//!
//! Capturing closures cannot be named this way; they run only under the fork start method, where
//! the child has the parent's memory (`Process::fork`).

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::Result;
use crate::reduction::{self, Message};

/// An entry function: runs a target with its encoded arguments and returns the exit code.
pub(crate) type Entry = fn(Message) -> i32;

/// The address of the anchor that entry offsets are measured from.
#[inline(never)]
fn anchor() {}

/// The offset of `entry` from the anchor, valid in any process running the same binary.
pub(crate) fn entry_offset(entry: Entry) -> i64 {
    crate::sys::offset_between(anchor as fn() as usize, entry as usize)
}

/// Turns an offset made by [`entry_offset`] back into a callable entry.
///
/// # Safety
///
/// `offset` must come from [`entry_offset`] in a process running the same executable file as this
/// one (the launch protocol checks the executable's identity before calling this).
pub(crate) unsafe fn entry_from_offset(offset: i64) -> Entry {
    // SAFETY: forwarded from the caller.
    unsafe { crate::sys::function_at::<Entry>(anchor as fn() as usize, offset) }
}

/// What a process body returns: `()`, or a `Result` whose error ends the process with exit code 1
/// after printing it (as `main` does), or an `i32` exit code.
pub trait ExitReport {
    /// The exit code this outcome maps to; may print an error first.
    fn exit_code(self) -> i32;
}

impl ExitReport for () {
    fn exit_code(self) -> i32 {
        0
    }
}

impl ExitReport for i32 {
    fn exit_code(self) -> i32 {
        self
    }
}

impl<T: ExitReport, E: std::fmt::Debug> ExitReport for std::result::Result<T, E> {
    fn exit_code(self) -> i32 {
        match self {
            Ok(value) => value.exit_code(),
            Err(error) => {
                eprintln!("Error: {error:?}");
                1
            }
        }
    }
}

/// A function that can be a process target with arguments `Args` (a tuple).
///
/// Implemented for every `fn` item and non-capturing closure of up to eight serde arguments whose
/// return type is an [`ExitReport`]. A capturing closure fails to compile with a message naming
/// [`Process::fork`](crate::Process::fork), the one start method that can run it. Each argument
/// is decoded into a value of its own in the child, so it cannot borrow: take `String`, not
/// `&str` (the compiler then names the trait `ArgumentMustBeOwned_UseStringNotStr`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a process target with arguments `{Args}`",
    label = "a target is a `fn` item or a closure that captures nothing, taking `{Args}` (owned serde values)",
    note = "a closure that captures: pass the captured values in `args` instead, or use `Process::fork(closure)`, whose child has a copy of this process's memory"
)]
pub trait Target<Args>: sealed::TargetFn<Args> + sealed::TargetCapturesNothing {}

impl<F, Args> Target<Args> for F where F: sealed::TargetFn<Args> + sealed::TargetCapturesNothing {}

/// An argument of a process target or a pool task: decoded in the other process into a value of
/// its own, so it cannot borrow. The compiler names this trait ("implementation of
/// `ArgumentMustBeOwned_UseStringNotStr` is not general enough") for a function that takes a
/// reference: take the owned type instead, `String` for `&str`, `Vec<u8>` for `&[u8]`, `T` for
/// `&T`.
#[allow(non_camel_case_types)]
pub trait ArgumentMustBeOwned_UseStringNotStr<'de>: Deserialize<'de> {}

impl<'de, T: Deserialize<'de>> ArgumentMustBeOwned_UseStringNotStr<'de> for T {}

// The sealed half names crate-private types; it cannot be named or implemented outside the crate.
#[allow(private_interfaces)]
pub(crate) mod sealed {
    use crate::reduction::Message;

    /// The crate-private half of [`Target`](super::Target): a function of these arguments.
    pub trait TargetFn<Args> {
        /// Decodes the arguments.
        fn decode(message: Message) -> crate::Result<Args>;
        /// Calls the target.
        fn call(self, args: Args) -> i32;
    }

    /// A target that captures nothing: a `fn` item or a non-capturing closure (checked as far as
    /// traits can see: `Copy + Send + 'static`; a closure capturing plain data, say an integer,
    /// passes this and fails when built, at the size check of the target's entry).
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a process target: a target must be a `fn` item or a closure that captures nothing",
        label = "this closure captures variables (a target must be `Copy + Send + 'static` and capture nothing)",
        note = "the child is another process: it gets the target's arguments, not what a closure captured; pass the captured values in `args` instead",
        note = "or use `Process::fork(closure)`: a forked child has a copy of this process's memory, captured variables included"
    )]
    pub trait TargetCapturesNothing: Copy + Send + 'static {}

    #[diagnostic::do_not_recommend]
    impl<F: Copy + Send + 'static> TargetCapturesNothing for F {}
}

/// The monomorphic entry of target `F` with arguments `Args`.
pub(crate) fn entry_of<F: Target<Args>, Args>() -> Entry {
    run_fn::<F, Args>
}

/// The rule a target's closure breaks when it captures plain data (see `sys::ZstRule`).
struct TargetRule;

impl crate::sys::ZstRule for TargetRule {
    const MESSAGE: &'static str = "a process target must be a fn item or a closure that captures nothing: this \
        closure captures variables (the note below names it), which a child started by spawn or the fork server \
        cannot receive; pass them in the target's arguments, or use Process::fork, whose child shares this memory";
}

fn run_fn<F: Target<Args>, Args>(message: Message) -> i32 {
    let target = crate::sys::conjure_zst_for::<F, TargetRule>();
    match F::decode(message) {
        Ok(args) => sealed::TargetFn::call(target, args),
        Err(e) => {
            eprintln!("multiproc: the child could not decode its arguments: {e}");
            1
        }
    }
}

macro_rules! impl_target {
    ($($arg:ident),*) => {
        #[allow(private_interfaces)]
        impl<F, R, $($arg,)*> sealed::TargetFn<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> R,
            R: ExitReport,
            $($arg: Serialize + for<'de> ArgumentMustBeOwned_UseStringNotStr<'de>,)*
        {
            fn decode(message: Message) -> Result<($($arg,)*)> {
                reduction::decode(message)
            }
            #[allow(non_snake_case)]
            fn call(self, args: ($($arg,)*)) -> i32 {
                let ($($arg,)*) = args;
                self($($arg),*).exit_code()
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);
impl_target!(A1, A2, A3, A4, A5, A6, A7);
impl_target!(A1, A2, A3, A4, A5, A6, A7, A8);

/// A process body as a type of your own: the Rust form of subclassing CPython's `Process` and
/// overriding `run()`.
///
/// The value is encoded in the parent and decoded in the child, where `run` is called.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, Run};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greeter { name: String }
///
/// impl Run for Greeter {
///     type Output = ();
///     fn run(self) {
///         println!("{} is here", self.name);
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::from_run(Greeter { name: "Jedan".into() });
/// p.start()?;
/// p.join()?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "run")]
pub trait Run: Serialize + DeserializeOwned + 'static {
    /// What the child returns; see [`ExitReport`].
    type Output: ExitReport;
    /// The body of the process.
    fn run(self) -> Self::Output;
}

fn run_object<T: Run>(message: Message) -> i32 {
    match reduction::decode::<T>(message) {
        Ok(object) => object.run().exit_code(),
        Err(e) => {
            eprintln!("multiproc: the child could not decode its process object: {e}");
            1
        }
    }
}

/// The last path segment of `T`'s type name, as Python names a class or function: `mul` for
/// `my_crate::tasks::mul`, `Vec<u8>` for `alloc::vec::Vec<u8>`, `{{closure}}` for a closure.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    // Generic arguments hold paths of their own: look for the last `::` before them.
    let path_end = full.find('<').unwrap_or(full.len());
    let start = full[..path_end].rfind("::").map_or(0, |at| at + 2);
    &full[start..]
}

/// A target ready to travel: its entry and its encoded arguments, plus a readable name for errors.
pub(crate) struct Job {
    pub(crate) entry: Entry,
    pub(crate) payload: Message,
    pub(crate) name: &'static str,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("target", &self.name).field("payload_bytes", &self.payload.bytes.len()).finish()
    }
}

impl Job {
    /// A job calling `target` with `args`.
    pub(crate) fn from_fn<F: Target<Args>, Args: Serialize>(_target: F, args: &Args) -> Result<Self> {
        Ok(Job { entry: entry_of::<F, Args>(), payload: reduction::encode(args)?, name: std::any::type_name::<F>() })
    }

    /// A job calling `object.run()`.
    pub(crate) fn from_run<T: Run>(object: &T) -> Result<Self> {
        Ok(Job { entry: run_object::<T>, payload: reduction::encode(object)?, name: std::any::type_name::<T>() })
    }
}
