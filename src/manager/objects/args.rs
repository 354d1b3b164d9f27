//! A call's arguments: positional and keyword, bound to a method's parameters as Python binds
//! them (with its `TypeError`s), and read as the types the methods need.

use std::time::Duration;

use super::Raise;
use crate::pickle::PickleValue;
use crate::pickle::decode::{Mode, decode};

/// The arguments of one call.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub(crate) positional: Vec<PickleValue>,
    pub(crate) keywords: Vec<(String, PickleValue)>,
}

/// A call's arguments as they came: a pickled tuple (this crate's proxies), or decoded (Python
/// clients' requests). User types take the pickle as it is; built-ins decode it.
pub(crate) enum Input {
    Pickled(Vec<u8>),
    Decoded(Args),
}

impl Input {
    /// The arguments, decoded.
    pub(crate) fn args(self) -> Result<Args, Raise> {
        match self {
            Input::Decoded(args) => Ok(args),
            Input::Pickled(bytes) => match decode(&bytes, Mode::Objects) {
                Ok(PickleValue::Tuple(positional)) => Ok(Args { positional, keywords: Vec::new() }),
                // `()` from serde: no arguments.
                Ok(PickleValue::None) => Ok(Args::default()),
                Ok(other) => Err(Raise::type_error(format!("the arguments are a {}, not a tuple", other.type_name()))),
                Err(e) => Err(Raise::Remote(format!("malformed arguments: {e}"))),
            },
        }
    }

    /// The positional arguments as a pickled tuple (keywords are refused).
    pub(crate) fn pickled(self, method: &str) -> Result<Vec<u8>, Raise> {
        match self {
            Input::Pickled(bytes) => Ok(bytes),
            Input::Decoded(args) => {
                if let Some((name, _)) = args.keywords.first() {
                    return Err(Raise::type_error(format!("{method}() got an unexpected keyword argument '{name}'")));
                }
                crate::pickle::encode::encode(&PickleValue::Tuple(args.positional)).map_err(Raise::type_error)
            }
        }
    }
}

impl Args {
    pub(crate) fn of(positional: Vec<PickleValue>) -> Args {
        Args { positional, keywords: Vec::new() }
    }

    /// Binds the arguments to the parameters `names`, the first `required` of them required:
    /// each parameter's value, or `None` where it was not given.
    pub(crate) fn bind<const N: usize>(
        self,
        method: &str,
        names: [&str; N],
        required: usize,
    ) -> Result<[Option<PickleValue>; N], Raise> {
        let given = self.positional.len() + self.keywords.len();
        if self.positional.len() > N {
            return Err(Raise::type_error(match (N, required) {
                (0, _) => format!("{method}() takes no arguments ({given} given)"),
                (n, r) if n == r => format!("{method}() takes exactly {n} argument{} ({given} given)", plural(n)),
                (n, _) => format!("{method}() takes at most {n} argument{} ({given} given)", plural(n)),
            }));
        }
        let mut bound: [Option<PickleValue>; N] = std::array::from_fn(|_| None);
        for (slot, value) in bound.iter_mut().zip(self.positional) {
            *slot = Some(value);
        }
        for (name, value) in self.keywords {
            let at = names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| Raise::type_error(format!("{method}() got an unexpected keyword argument '{name}'")))?;
            if bound[at].replace(value).is_some() {
                return Err(Raise::type_error(format!("{method}() got multiple values for argument '{name}'")));
            }
        }
        if let Some(missing) = bound[..required.min(N)].iter().position(Option::is_none) {
            return Err(Raise::type_error(format!("{method}() missing required argument: '{}'", names[missing])));
        }
        Ok(bound)
    }

    /// No arguments at all.
    pub(crate) fn none(self, method: &str) -> Result<(), Raise> {
        self.bind(method, [], 0).map(drop)
    }

    /// Exactly one argument.
    pub(crate) fn one(self, method: &str, name: &str) -> Result<PickleValue, Raise> {
        let [value] = self.bind(method, [name], 1)?;
        Ok(value.unwrap_or_default())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The integer value of an argument (Python's `__index__`: an `int` or a `bool`).
pub(crate) fn int(value: &PickleValue, what: &str) -> Result<i64, Raise> {
    match value {
        PickleValue::I64(i) => Ok(*i),
        PickleValue::Bool(b) => Ok(i64::from(*b)),
        PickleValue::Int(big) => Err(Raise::new(
            "builtins.OverflowError",
            vec![PickleValue::String(format!("Python int too large to convert to C ssize_t: {big}"))],
        )),
        other => Err(Raise::type_error(format!("{what} must be integers or slices, not {}", other.type_name()))),
    }
}

/// An optional timeout in seconds (`None`: wait for ever; infinite or beyond the clock: also).
/// Negative values are refused (`ValueError`, as `queue.Queue` raises it) unless `negative_is_zero`
/// (as `Event.wait` and `Condition.wait` take them).
pub(crate) fn timeout(value: Option<&PickleValue>, negative_is_zero: bool) -> Result<Option<Duration>, Raise> {
    let seconds = match value {
        None | Some(PickleValue::None) => return Ok(None),
        Some(PickleValue::I64(i)) => *i as f64,
        Some(PickleValue::F64(x)) => *x,
        Some(PickleValue::Bool(b)) => f64::from(u8::from(*b)),
        Some(other) => {
            return Err(Raise::type_error(format!(
                "a timeout must be a number of seconds, not a {}",
                other.type_name()
            )));
        }
    };
    if seconds.is_nan() {
        return Err(Raise::value_error("Invalid value NaN (not a number)"));
    }
    if seconds < 0.0 {
        if negative_is_zero {
            return Ok(Some(Duration::ZERO));
        }
        return Err(Raise::value_error("'timeout' must be a non-negative number"));
    }
    Ok(Duration::try_from_secs_f64(seconds).ok())
}

/// Python's truth value of an optional argument (`default` when absent).
pub(crate) fn flag(value: Option<&PickleValue>, default: bool) -> bool {
    value.map_or(default, super::python::truthy)
}
