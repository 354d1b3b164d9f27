//! The replies of a CPython manager (`managers.py`: `('#RETURN', value)`, `('#ERROR', exception)`,
//! `('#TRACEBACK', text)`, `('#UNSERIALIZABLE', text)`, `('#PROXY', (exposed, token))`), decoded
//! without trusting them: any byte string gives a reply or an error, never a panic.
//!
//! serde-pickle decodes plain data; Python objects (an exception, a `Token`) are globals it cannot
//! resolve. Its lenient options keep an object's constructor arguments (an exception's `args`, a
//! `Token`'s state) but drop the class, so a small scan of the opcodes ([`first_class`]) finds the
//! class name, and checks on the way that every length the pickle declares fits in the message.

use crate::connection::pickle_ops::check_expansion;
use crate::connection::pickle_ops::{Ops, little_endian};
use crate::connection::{PickleValue, decode_checked_pickle};
use crate::error::{Error, Result};

/// What a call on a CPython manager gave back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// `'#RETURN'`: the method's result.
    Return(PickleValue),
    /// `'#PROXY'`: the method's result lives in the server as a new object, owned by this reply
    /// (one reference).
    Proxy {
        /// The new object's registered type.
        typeid: String,
        /// Its identity in the server (`'%x' % id(obj)`).
        ident: String,
        /// The methods its proxy may call.
        exposed: Vec<String>,
    },
}

/// The fuzz target `cpython_manager_replies`: any bytes decode to a reply or an error.
///
/// serde-pickle's own panics are caught and become errors (see `decode_checked_pickle`), but
/// libFuzzer's panic hook would abort on them first: it is silenced for the call. A panic in this
/// crate's code still unwinds to libFuzzer, which reports it.
#[doc(hidden)]
pub fn fuzz_reply(bytes: &[u8]) {
    type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
    /// Puts the previous hook back, also when a panic unwinds through.
    struct Restore(Option<Hook>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(hook) = self.0.take() {
                std::panic::set_hook(hook);
            }
        }
    }
    let _restore = Restore(Some(std::panic::take_hook()));
    std::panic::set_hook(Box::new(|_| {}));
    let _ = decode_reply(bytes);
}

/// Decodes one reply message.
pub(crate) fn decode_reply(bytes: &[u8]) -> Result<Reply> {
    let class = first_class(bytes)?;
    check_expansion(bytes).map_err(|e| garbage(&e))?;
    let strict = decode_checked_pickle(bytes, |b| serde_pickle::value_from_slice(b, serde_pickle::DeOptions::new()));
    let value = match strict {
        Ok(value) => value,
        Err(strict_error) => {
            let lenient = serde_pickle::DeOptions::new().keep_restore_state().replace_unresolved_globals();
            let value = decode_checked_pickle(bytes, |b| serde_pickle::value_from_slice(b, lenient))
                .map_err(|e| garbage(&e))?;
            if tag_of(&value) == Some("#RETURN") {
                let class = class.unwrap_or_else(|| "an unknown class".into());
                return Err(Error::Codec {
                    action: "decode",
                    detail: format!(
                        "the Python method returned an object of class {class}, which is not plain data \
                         ({strict_error}); return plain data (numbers, strings, bytes, lists, tuples, dicts, \
                         sets), or map the method to a typeid with `method_to_typeid` to get a proxy"
                    ),
                });
            }
            value
        }
    };
    interpret(value, class)
}

fn garbage(detail: &str) -> Error {
    Error::Protocol(format!(
        "a reply from the CPython manager could not be decoded ({detail}); is the peer a multiprocessing manager?"
    ))
}

fn tag_of(value: &PickleValue) -> Option<&str> {
    match value {
        PickleValue::Tuple(items) | PickleValue::List(items) => match items.first() {
            Some(PickleValue::String(tag)) => Some(tag),
            _ => None,
        },
        _ => None,
    }
}

fn interpret(value: PickleValue, class: Option<String>) -> Result<Reply> {
    let (tag, payload) = match value {
        PickleValue::Tuple(items) | PickleValue::List(items) if items.len() == 2 => {
            let mut items = items.into_iter();
            match (items.next(), items.next()) {
                (Some(PickleValue::String(tag)), Some(payload)) => (tag, payload),
                _ => return Err(garbage("not a (tag, value) pair")),
            }
        }
        _ => return Err(garbage("not a (tag, value) pair")),
    };
    match tag.as_str() {
        "#RETURN" => Ok(Reply::Return(payload)),
        "#ERROR" => Err(Error::PythonException {
            exception: class.unwrap_or_else(|| "an exception".into()),
            message: exception_message(&payload),
        }),
        "#TRACEBACK" => Err(Error::Remote(text_of(payload))),
        "#UNSERIALIZABLE" => Err(Error::Remote(format!("the result could not be pickled: {}", text_of(payload)))),
        "#PROXY" => proxy_of(payload),
        other => Err(garbage(&format!("unknown reply kind {other:?}"))),
    }
}

fn text_of(payload: PickleValue) -> String {
    match payload {
        PickleValue::String(text) => text.trim_end().to_string(),
        other => other.to_string(),
    }
}

/// An exception's message as Python's `str()` shows it: the single argument, or the arguments.
fn exception_message(payload: &PickleValue) -> String {
    match payload {
        PickleValue::Tuple(args) => match args.as_slice() {
            [] => String::new(),
            [PickleValue::String(text)] => text.clone(),
            [single] => single.to_string(),
            _ => payload.to_string(),
        },
        // An exception with attributes comes back as its attribute dict.
        other => other.to_string(),
    }
}

/// `(exposed, Token)`, where the token kept its state `(typeid, address, id)`.
fn proxy_of(payload: PickleValue) -> Result<Reply> {
    let bad = || garbage("a '#PROXY' reply that is not (exposed, token)");
    let PickleValue::Tuple(parts) = payload else { return Err(bad()) };
    let [exposed, token] = <[PickleValue; 2]>::try_from(parts).map_err(|_| bad())?;
    let exposed = match exposed {
        PickleValue::Tuple(names) | PickleValue::List(names) => names
            .into_iter()
            .map(|name| match name {
                PickleValue::String(name) => Ok(name),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>>>()?,
        PickleValue::None => Vec::new(),
        _ => return Err(bad()),
    };
    let PickleValue::Tuple(state) = token else { return Err(bad()) };
    match state.as_slice() {
        [PickleValue::String(typeid), _address, PickleValue::String(ident)] => {
            Ok(Reply::Proxy { typeid: typeid.clone(), ident: ident.clone(), exposed })
        }
        _ => Err(bad()),
    }
}

/// The first class a pickle refers to (the exception of an `'#ERROR'` reply, the `Token` of a
/// `'#PROXY'`), skipping `copyreg` helpers: `"KeyError"` for built-ins, `"module.Name"` otherwise.
/// Fails if an opcode is unknown or an argument runs past the end.
pub(crate) fn first_class(bytes: &[u8]) -> Result<Option<String>> {
    let mut found = None;
    // The strings most recently pushed (for STACK_GLOBAL), and the memo of strings (for GETs).
    let mut recent: [Option<String>; 2] = [None, None];
    let mut memo: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let mut memo_next = 0u64;
    for op in Ops::new(bytes) {
        let (opcode, data) = op.map_err(|e| garbage(&e))?;
        let pushed_string = match opcode {
            0x8c | b'X' | 0x8d => Some(String::from_utf8_lossy(data).into_owned()),
            b'h' | b'j' => memo.get(&little_endian(data)).cloned(),
            b'g' => {
                std::str::from_utf8(data).ok().and_then(|s| s.trim().parse().ok()).and_then(|i| memo.get(&i).cloned())
            }
            _ => None,
        };
        match opcode {
            0x94 | b'q' | b'r' | b'p' => {
                let index = match opcode {
                    0x94 => memo_next,
                    b'p' => std::str::from_utf8(data).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(u64::MAX),
                    _ => little_endian(data),
                };
                memo_next = memo_next.saturating_add(1);
                if let Some(top) = &recent[1] {
                    memo.insert(index, top.clone());
                }
            }
            // Framing and protocol markers leave the stack alone.
            0x80 | 0x95 => {}
            0x93 if found.is_none() => {
                if let [Some(module), Some(name)] = &recent {
                    found = class_name(module, name);
                }
                recent = [None, None];
            }
            b'c' | b'i' if found.is_none() => {
                let text = String::from_utf8_lossy(data);
                let mut lines = text.lines();
                if let (Some(module), Some(name)) = (lines.next(), lines.next()) {
                    found = class_name(module, name);
                }
                recent = [None, None];
            }
            _ => {
                let [_, last] = &recent;
                recent = [last.clone(), pushed_string];
            }
        }
    }
    Ok(found)
}

fn class_name(module: &str, name: &str) -> Option<String> {
    match module {
        "copyreg" | "copy_reg" | "_codecs" => None,
        "builtins" | "__builtin__" | "exceptions" => Some(name.to_string()),
        // `queue.Empty` is defined in the C module.
        "_queue" => Some(format!("queue.{name}")),
        _ => Some(format!("{module}.{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ('#ERROR', KeyError('missing')) as CPython 3.11's ForkingPickler writes it.
    const KEY_ERROR: &[u8] = b"\x80\x04\x95\x32\x00\x00\x00\x00\x00\x00\x00\x8c\x06#ERROR\x94\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x07missing\x94\x85\x94R\x94\x86\x94.";

    // ('#PROXY', (('a', 'b'), Token('dict', ('127.0.0.1', 5000), '7f00'))).
    const PROXY: &[u8] = b"\x80\x04\x95b\x00\x00\x00\x00\x00\x00\x00\x8c\x06#PROXY\x94\x8c\x01a\x94\x8c\x01b\x94\x86\x94\x8c\x18multiprocessing.managers\x94\x8c\x05Token\x94\x93\x94)\x81\x94\x8c\x04dict\x94\x8c\x09127.0.0.1\x94M\x88\x13\x86\x94\x8c\x047f00\x94\x87\x94b\x86\x94\x86\x94.";

    #[test]
    fn a_key_error_names_its_class_and_message() {
        match decode_reply(KEY_ERROR) {
            Err(Error::PythonException { exception, message }) => {
                assert_eq!(exception, "KeyError");
                assert_eq!(message, "missing");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_return_of_plain_data_is_its_value() {
        let bytes = serde_pickle::to_vec(&("#RETURN", vec![1, 2]), serde_pickle::SerOptions::new()).unwrap();
        assert_eq!(
            decode_reply(&bytes).unwrap(),
            Reply::Return(PickleValue::List(vec![PickleValue::I64(1), PickleValue::I64(2)]))
        );
    }

    #[test]
    fn a_traceback_is_a_remote_error() {
        let bytes =
            serde_pickle::to_vec(&("#TRACEBACK", "Traceback...\nValueError: no\n"), serde_pickle::SerOptions::new())
                .unwrap();
        assert!(matches!(decode_reply(&bytes), Err(Error::Remote(text)) if text.ends_with("ValueError: no")));
    }

    /// A frozenset of falses, small integers, floats and a NaN, found by the fuzz target
    /// `cpython_manager_replies`: serde-pickle sorts a set's items with an ordering that such
    /// mixtures break, and the standard library's sort panics on that.
    fn set_that_breaks_serde_pickle() -> Vec<u8> {
        b"\x28\x4d\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x87\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\
          \x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x81\x89\x89\x89\x89\x89\x89\x89\x81\x4b\x01\x47\x40\x04\x8c\x73\
          \x94\x88\x47\x47\x47\xff\xff\xff\xff\xff\xff\xff\x0e\x89\x89\x89\x4d\x4d\x4d\x4d\x4d\xcd\x4d\x4d\x86\x8f\x91\x2e\
          \x04\x95\x30\x95\x30"
            .to_vec()
    }

    #[test]
    fn a_set_that_breaks_the_decoder_is_an_error() {
        assert!(
            std::panic::catch_unwind(|| serde_pickle::value_from_slice(
                &set_that_breaks_serde_pickle(),
                serde_pickle::DeOptions::new().keep_restore_state().replace_unresolved_globals()
            ))
            .is_err(),
            "serde-pickle no longer panics here: this test's input no longer covers the guard"
        );
        let error = decode_reply(&set_that_breaks_serde_pickle()).unwrap_err().to_string();
        assert!(error.contains("could not be decoded"), "{error}");
    }

    /// Junk, truncations and bit flips of real replies give errors, never a panic.
    #[test]
    fn garbage_never_panics() {
        let mut samples: Vec<Vec<u8>> = vec![
            Vec::new(),
            b".".to_vec(),
            b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7f".to_vec(),
            b"cbuiltins\nKeyError".to_vec(),
            b"\x93\x93R.".to_vec(),
            b"(((((((((t.".to_vec(),
            b"h\x05.".to_vec(),
        ];
        for real in [KEY_ERROR, PROXY] {
            for len in 0..real.len() {
                samples.push(real[..len].to_vec());
            }
            for i in 0..real.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut copy = real.to_vec();
                    copy[i] ^= flip;
                    samples.push(copy);
                }
            }
        }
        let mut next = crate::test_support::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            samples.push((0..len).map(|_| next() as u8).collect());
        }
        for sample in &samples {
            let _ = decode_reply(sample);
        }
    }

    #[test]
    fn a_proxy_reply_gives_the_token() {
        assert_eq!(
            decode_reply(PROXY).unwrap(),
            Reply::Proxy { typeid: "dict".into(), ident: "7f00".into(), exposed: vec!["a".into(), "b".into()] }
        );
    }
}
