//! Functions as values: [`Function`], a typed handle to a `fn` item (or a closure that captures
//! nothing) that can travel to another process of the same program and be called there.
//!
//! CPython pickles a function by its qualified name and the receiver imports it; its examples put
//! `(mul, (i, 7))` on a queue. Here a handle travels as the function's offset in the executable
//! (as a process target does, see `target.rs`), signed with the program's authkey over the
//! executable's identity and the function's type, so that a handle is checked when it arrives:
//! from another program, another executable, or for another signature, it is refused with an
//! error instead of being called.

use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::{self, Refused, SignedFnPtr};

/// A function `fn(Args) -> R` as a value that can travel in a [`Queue`](crate::Queue), over a
/// [`Connection`](crate::Connection), or as an argument of a process or a pool task, and be
/// called in any process running the same binary (CPython: a function put on a queue or passed
/// as an argument). `Args` is the tuple of its arguments.
///
/// Made from a `fn` item or a closure that captures nothing ([`Function::new`]); called with
/// [`call`](Self::call). When it arrives in another process it is checked: it must have been made
/// by this program (signed with its authkey, for this very executable) for this signature;
/// otherwise decoding fails with a message that says which.
///
/// # Examples
///
/// CPython's `mp_workers.py` puts `(mul, (i, 7))` and `(plus, (i, 8))` on a task queue; the
/// workers call whatever function comes:
///
/// ```
/// use multiproc::{Function, Process, Queue};
///
/// fn mul(a: u64, b: u64) -> u64 { a * b }
/// fn plus(a: u64, b: u64) -> u64 { a + b }
///
/// type Task = Option<(Function<(u64, u64), u64>, (u64, u64))>;
///
/// fn worker(tasks: Queue<Task>, done: Queue<String>) -> multiproc::Result<()> {
///     while let Some((func, args)) = tasks.get()? {
///         done.put(format!("{}{:?} = {}", func.name(), args, func.call(args)))?;
///     }
///     Ok(())
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let tasks: Queue<Task> = Queue::new()?;
/// let done: Queue<String> = Queue::new()?;
/// tasks.put(Some((Function::new(mul), (3, 7))))?;
/// tasks.put(Some((Function::new(plus), (3, 8))))?;
/// tasks.put(None)?;
/// let mut p = Process::new(worker, (tasks.clone(), done.clone()));
/// p.start()?;
/// assert_eq!(done.get()?, "mul(3, 7) = 21");
/// assert_eq!(done.get()?, "plus(3, 8) = 11");
/// p.join()?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "callable")]
pub struct Function<Args, R> {
    call: fn(Args) -> R,
    name: fn() -> &'static str,
    _types: PhantomData<fn(Args) -> R>,
}

impl<Args: 'static, R: 'static> Function<Args, R> {
    /// A handle to `f`, a `fn` item or a closure that captures nothing, of arguments `Args` (a
    /// tuple: `()`, `(a,)`, `(a, b)`, ... up to eight).
    pub fn new<F: IntoFunction<Args, R>>(f: F) -> Self {
        let _ = f;
        Function { call: F::trampoline(), name: super::target::short_type_name::<F>, _types: PhantomData }
    }

    /// Calls the function (in this process).
    pub fn call(&self, args: Args) -> R {
        (self.call)(args)
    }

    /// The function's name, as CPython's `__name__` (`mul` for `fn mul`; `{{closure}}` for a
    /// closure).
    pub fn name(&self) -> &'static str {
        (self.name)()
    }
}

impl<Args, R> Clone for Function<Args, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Args, R> Copy for Function<Args, R> {}

impl<Args: 'static, R: 'static> std::fmt::Debug for Function<Args, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Function({}: {})", self.name(), std::any::type_name::<fn(Args) -> R>())
    }
}

/// CPython's `repr` of a function: `<function mul>`.
impl<Args: 'static, R: 'static> std::fmt::Display for Function<Args, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<function {}>", self.name())
    }
}

/// The key and executable a handle is signed for: this process's.
fn signing_context() -> Result<(Vec<u8>, Vec<u8>), String> {
    let exe = crate::process::launch::own_exe()
        .map_err(|e| format!("cannot name a function for another process: {e}"))?
        .to_string();
    Ok((crate::current_process().authkey().to_vec(), exe.into_bytes()))
}

impl<Args: 'static, R: 'static> Serialize for Function<Args, R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (key, exe) = signing_context().map_err(serde::ser::Error::custom)?;
        SignedFnPtr::sign(self.call, self.name, &key, &exe).serialize(serializer)
    }
}

impl<'de, Args: 'static, R: 'static> Deserialize<'de> for Function<Args, R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let signed = SignedFnPtr::deserialize(deserializer)?;
        let (key, exe) = signing_context().map_err(crate::reduction::decode_failure::<D::Error>)?;
        match signed.resolve::<Args, R>(&key, &exe) {
            Ok((call, name)) => Ok(Function { call, name, _types: PhantomData }),
            Err(Refused::OtherType(theirs)) => Err(crate::reduction::decode_failure::<D::Error>(format!(
                "a Function of type `{}` was expected, but this one is a `{theirs}`",
                std::any::type_name::<fn(Args) -> R>()
            ))),
            Err(Refused::NotOurs) => Err(crate::reduction::decode_failure::<D::Error>(format!(
                "refusing a Function `{}`: it was not made by this program (another authkey or another \
                 executable, or its bytes were altered); a function handle can only be called in a process \
                 running the same binary, started by the same program",
                signed.signature()
            ))),
        }
    }
}

/// A function that can become a [`Function`] of arguments `Args` returning `R`: a `fn` item or a
/// closure that captures nothing, of up to eight arguments.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot become a `Function<{Args}, {R}>`",
    label = "a function handle needs a `fn` item or a closure that captures nothing, taking `{Args}`",
    note = "a `Function` travels to other processes as a reference to code: data a closure captures cannot go \
            with it; pass that data as an argument instead"
)]
pub trait IntoFunction<Args, R>: Copy + Send + Sync + 'static {
    /// The function taking its arguments as one tuple.
    #[doc(hidden)]
    fn trampoline() -> fn(Args) -> R;
}

/// The rule a closure breaks when it captures plain data (see `sys::ZstRule`).
struct FunctionRule;

impl sys::ZstRule for FunctionRule {
    const MESSAGE: &'static str = "a Function must be a fn item or a closure that captures nothing: this closure \
        captures variables (the note below names it), which cannot travel to another process; pass them as \
        arguments instead";
}

macro_rules! impl_into_function {
    ($($arg:ident),*) => {
        #[diagnostic::do_not_recommend]
        impl<F, R, $($arg,)*> IntoFunction<($($arg,)*), R> for F
        where
            F: Fn($($arg),*) -> R + Copy + Send + Sync + 'static,
        {
            fn trampoline() -> fn(($($arg,)*)) -> R {
                #[allow(non_snake_case)]
                fn call<F: Fn($($arg),*) -> R + Copy, R, $($arg,)*>(args: ($($arg,)*)) -> R {
                    let f = sys::conjure_zst_for::<F, FunctionRule>();
                    let ($($arg,)*) = args;
                    f($($arg),*)
                }
                call::<F, R, $($arg,)*>
            }
        }
    };
}

impl_into_function!();
impl_into_function!(A1);
impl_into_function!(A1, A2);
impl_into_function!(A1, A2, A3);
impl_into_function!(A1, A2, A3, A4);
impl_into_function!(A1, A2, A3, A4, A5);
impl_into_function!(A1, A2, A3, A4, A5, A6);
impl_into_function!(A1, A2, A3, A4, A5, A6, A7);
impl_into_function!(A1, A2, A3, A4, A5, A6, A7, A8);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduction::{Message, decode, encode};

    fn mul(a: u64, b: u64) -> u64 {
        a * b
    }

    fn greet(name: String) -> String {
        format!("hello, {name}")
    }

    fn bytes_of<T: Serialize>(value: &T) -> Vec<u8> {
        encode(value).unwrap().bytes
    }

    fn decode_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> crate::Result<T> {
        decode(Message { bytes: bytes.to_vec(), fds: Vec::new() })
    }

    #[test]
    fn a_handle_round_trips_and_calls() {
        let f = Function::new(mul);
        assert_eq!(f.call((6, 7)), 42);
        assert_eq!(f.name(), "mul");
        assert_eq!(f.to_string(), "<function mul>");
        let back: Function<(u64, u64), u64> = decode_bytes(&bytes_of(&f)).unwrap();
        assert_eq!(back.call((3, 5)), 15);
        assert_eq!(back.name(), "mul");
        let closure = Function::new(|x: u32| x + 1);
        assert_eq!(closure.call((1,)), 2);
        assert_eq!(closure.name(), "{{closure}}");
    }

    #[test]
    fn another_signature_is_refused_with_both_types() {
        let bytes = bytes_of(&Function::new(greet));
        let error = decode_bytes::<Function<(u64, u64), u64>>(&bytes).unwrap_err().to_string();
        assert!(error.contains("fn((u64, u64)) -> u64") && error.contains("alloc::string::String"), "{error}");
    }

    #[test]
    fn altered_bytes_or_another_key_are_refused() {
        let f = Function::new(mul);
        let bytes = bytes_of(&f);
        // Every single-byte change is refused (or fails to decode), never called.
        for at in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[at] ^= 0x40;
            if let Ok(g) = decode_bytes::<Function<(u64, u64), u64>>(&altered) {
                panic!("byte {at} altered and still accepted: {g:?}");
            }
        }
        let (_, exe) = signing_context().unwrap();
        let foreign = SignedFnPtr::sign(f.call, f.name, b"another program's key", &exe);
        let error = decode_bytes::<Function<(u64, u64), u64>>(&bytes_of(&foreign)).unwrap_err().to_string();
        assert!(error.contains("not made by this program"), "{error}");
        let other_exe = SignedFnPtr::sign(f.call, f.name, crate::current_process().authkey(), b"another binary");
        assert!(decode_bytes::<Function<(u64, u64), u64>>(&bytes_of(&other_exe)).is_err());
    }

    #[test]
    fn short_type_names() {
        use super::super::target::short_type_name;
        assert_eq!(short_type_name::<fn()>(), "fn()");
        assert_eq!(short_type_name::<Vec<u8>>(), "Vec<u8>");
        assert_eq!(short_type_name::<String>(), "String");
        assert_eq!(short_type_name::<Function<(u64,), u64>>(), "Function<(u64,), u64>");
    }
}
