//! The replies of a CPython manager (`managers.py`: `('#RETURN', value)`, `('#ERROR', exception)`,
//! `('#TRACEBACK', text)`, `('#UNSERIALIZABLE', text)`, `('#PROXY', (exposed, token))`), decoded
//! without trusting them: any byte string gives a reply or an error, never a panic.
//!
//! The decoder keeps Python objects (an exception, a `Token`) as [`Object`]s here; a method's
//! result (`'#RETURN'`) must be plain data, and an object in it is refused naming its class.

use crate::error::{Error, Result};
use crate::pickle::decode::{Mode, decode};
use crate::pickle::{Build, Object, PickleValue};

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
#[doc(hidden)]
pub fn fuzz_reply(bytes: &[u8]) {
    let _ = decode_reply(bytes);
}

/// Decodes one reply message.
pub(crate) fn decode_reply(bytes: &[u8]) -> Result<Reply> {
    let value = decode(bytes, Mode::Objects).map_err(|e| garbage(&e))?;
    interpret(value)
}

fn garbage(detail: &str) -> Error {
    Error::Protocol(format!(
        "a reply from the CPython manager could not be decoded ({detail}); is the peer a multiprocessing manager?"
    ))
}

fn interpret(value: PickleValue) -> Result<Reply> {
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
        "#RETURN" => match payload.find_object() {
            None => Ok(Reply::Return(payload)),
            Some(object) => Err(Error::Codec {
                action: "decode",
                detail: format!(
                    "the Python method returned an object of class {}, which is not plain data; return plain \
                     data (numbers, strings, bytes, lists, tuples, dicts, sets, dates, decimals, UUIDs), or map the \
                     method to a typeid with `method_to_typeid` to get a proxy",
                    object.class
                ),
            }),
        },
        "#ERROR" => Err(exception_of(payload)),
        "#TRACEBACK" => Err(Error::Remote(text_of(payload))),
        "#UNSERIALIZABLE" => Err(Error::Remote(format!("the result could not be pickled: {}", text_of(payload)))),
        "#PROXY" => proxy_of(payload),
        other => Err(garbage(&format!("unknown reply kind {other:?}"))),
    }
}

/// The exception of an `'#ERROR'` reply: its class as Python names it (`KeyError`,
/// `queue.Empty`) and its message as `str()` shows it.
fn exception_of(payload: PickleValue) -> Error {
    match payload {
        PickleValue::Object(object) => {
            Error::PythonException { exception: class_name(&object.class), message: exception_message(&object) }
        }
        other => Error::PythonException { exception: "an exception".into(), message: other.to_python_str() },
    }
}

fn text_of(payload: PickleValue) -> String {
    match payload {
        PickleValue::String(text) => text.trim_end().to_string(),
        other => other.to_string(),
    }
}

/// An exception's message as Python's `str()` shows it: the single argument, or the arguments.
fn exception_message(object: &Object) -> String {
    match object.args() {
        [] => match &object.state {
            // An exception with attributes only.
            Some(state) => state.to_string(),
            None => String::new(),
        },
        [PickleValue::String(text)] => text.clone(),
        [single] => single.to_string(),
        args => PickleValue::Tuple(args.to_vec()).to_string(),
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
    let PickleValue::Object(token) = token else { return Err(bad()) };
    let state = match (&token.build, &token.state) {
        (_, Some(PickleValue::Tuple(state))) => state.as_slice(),
        (Build::Call(args), None) => args.as_slice(),
        _ => return Err(bad()),
    };
    match state {
        [PickleValue::String(typeid), _address, PickleValue::String(ident)] => {
            Ok(Reply::Proxy { typeid: typeid.clone(), ident: ident.clone(), exposed })
        }
        _ => Err(bad()),
    }
}

/// A class as Python's traceback names it: `KeyError` for built-ins, `queue.Empty` for the C
/// module's classes, `module.Name` otherwise.
fn class_name(class: &str) -> String {
    match class.rsplit_once('.') {
        Some(("builtins" | "__builtin__" | "exceptions", name)) => name.to_string(),
        // `queue.Empty` is defined in the C module.
        Some(("_queue", name)) => format!("queue.{name}"),
        _ => class.to_string(),
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
        let bytes = crate::pickle::to_vec(&("#RETURN", vec![1, 2])).unwrap();
        assert_eq!(
            decode_reply(&bytes).unwrap(),
            Reply::Return(PickleValue::List(vec![PickleValue::I64(1), PickleValue::I64(2)]))
        );
    }

    #[test]
    fn a_traceback_is_a_remote_error() {
        let bytes = crate::pickle::to_vec(&("#TRACEBACK", "Traceback...\nValueError: no\n")).unwrap();
        assert!(matches!(decode_reply(&bytes), Err(Error::Remote(text)) if text.ends_with("ValueError: no")));
    }

    /// A frozenset of falses, small integers, floats and a NaN, found by the fuzz target
    /// `cpython_manager_replies`: serde-pickle (the decoder before this crate's own) panicked on it.
    fn set_that_broke_serde_pickle() -> Vec<u8> {
        b"\x28\x4d\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x87\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\
          \x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x89\x81\x89\x89\x89\x89\x89\x89\x89\x81\x4b\x01\x47\x40\x04\x8c\x73\
          \x94\x88\x47\x47\x47\xff\xff\xff\xff\xff\xff\xff\x0e\x89\x89\x89\x4d\x4d\x4d\x4d\x4d\xcd\x4d\x4d\x86\x8f\x91\x2e\
          \x04\x95\x30\x95\x30"
            .to_vec()
    }

    #[test]
    fn a_set_that_broke_the_old_decoder_is_an_error() {
        let error = decode_reply(&set_that_broke_serde_pickle()).unwrap_err().to_string();
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
