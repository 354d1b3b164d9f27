//! The server's front for CPython clients: `BaseManager(address, authkey).connect()`,
//! `SyncManager` and its proxies, unchanged, speak CPython's manager protocol (`managers.py`) to
//! this crate's server and use the same objects as this crate's proxies.
//!
//! The protocol, as CPython's `Server` speaks it: a connection carries one request
//! `(None, funcname, args, kwds)` and its reply (`create`, `incref`, `decref`, `dummy`,
//! `number_of_objects`, `debug_info`, `get_methods`, `shutdown`), except `accept_connection`,
//! after which it carries method calls `(ident, methodname, args, kwds)` for good (a channel per
//! client thread). Replies are `('#RETURN', value)`, `('#ERROR', exception)` (a method raised:
//! the client raises the same exception), `('#TRACEBACK', text)` (the server failed: the client
//! raises `RemoteError`) and `('#PROXY', (exposed, token))` (a method gave a new object: a dict's
//! `__iter__`). Objects are named by their number in hexadecimal (CPython: `'%x' % id(obj)`),
//! and counted by `incref`/`decref`, as CPython counts them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::channel::{Next, RequestReader};
use super::objects::{Args, Caller, Input, Outcome, Raise, Served};
use super::protocol::{MAX_MESSAGE, ObjectId};
use super::server::{Shared, call_object, no_such_object, stop_serving};
use crate::Connection;
use crate::connection::Address;
use crate::pickle::decode::{Mode, decode};
use crate::pickle::encode::encode;
use crate::pickle::{Build, Object, PickleValue};

/// A request: `(ident, name, args, kwds)`.
struct Request {
    ident: PickleValue,
    name: String,
    args: Args,
}

fn request_of(bytes: &[u8]) -> Result<Request, String> {
    let value = decode(bytes, Mode::Objects)?;
    let PickleValue::Tuple(parts) = value else { return Err("a request that is not a tuple".into()) };
    let [ident, name, args, kwds] = <[PickleValue; 4]>::try_from(parts)
        .map_err(|_| "a request that is not (ident, name, args, kwds)".to_string())?;
    let PickleValue::String(name) = name else { return Err("a request whose method name is not a str".into()) };
    let positional = match args {
        PickleValue::Tuple(items) | PickleValue::List(items) => items,
        _ => return Err("a request whose arguments are not a tuple".into()),
    };
    let keywords = match kwds {
        PickleValue::Dict(pairs) => pairs
            .into_iter()
            .map(|(k, v)| match k {
                PickleValue::String(k) => Ok((k, v)),
                _ => Err("a keyword argument whose name is not a str".to_string()),
            })
            .collect::<Result<_, _>>()?,
        PickleValue::None => Vec::new(),
        _ => return Err("a request whose keyword arguments are not a dict".into()),
    };
    Ok(Request { ident, name, args: Args { positional, keywords } })
}

fn tagged(tag: &str, value: PickleValue) -> PickleValue {
    PickleValue::Tuple(vec![PickleValue::from(tag), value])
}

fn send(conn: &mut Connection, reply: &PickleValue) -> crate::Result<()> {
    match encode(reply) {
        Ok(bytes) => conn.send_bytes(&bytes),
        Err(e) => {
            // CPython: the result could not be pickled.
            let text = PickleValue::String(format!("the result cannot be pickled: {e}"));
            conn.send_bytes(&encode(&tagged("#UNSERIALIZABLE", text)).unwrap_or_default())
        }
    }
}

/// `('#TRACEBACK', text)`: the client raises `RemoteError` with the text.
pub(crate) fn send_traceback(conn: &mut Connection, text: &str) -> crate::Result<()> {
    send(conn, &tagged("#TRACEBACK", PickleValue::String(format!("Traceback (most recent call last):\n{text}\n"))))
}

/// The reply to a failure: `'#ERROR'` with the exception, or `'#TRACEBACK'`.
fn failure(raise: &Raise) -> PickleValue {
    match raise {
        Raise::Exception { .. } => tagged("#ERROR", raise.to_object()),
        Raise::Remote(text) => {
            tagged("#TRACEBACK", PickleValue::String(format!("Traceback (most recent call last):\n{text}\n")))
        }
    }
}

/// An object's name for CPython's clients.
fn ident_of(id: ObjectId) -> PickleValue {
    PickleValue::String(format!("{id:x}"))
}

fn id_of(ident: &PickleValue) -> Result<ObjectId, Raise> {
    match ident {
        PickleValue::String(text) => {
            ObjectId::from_str_radix(text, 16).map_err(|_| Raise::Remote(format!("KeyError: {ident}")))
        }
        _ => Err(Raise::Remote(format!("KeyError: {ident}"))),
    }
}

fn exposed_of(object: &Arc<dyn Served>) -> PickleValue {
    PickleValue::Tuple(object.exposed().iter().map(|m| PickleValue::from(*m)).collect())
}

/// The server's address as CPython writes addresses (a `Token`'s).
fn address_value(address: &Address) -> PickleValue {
    match address {
        Address::Tcp(addr) => PickleValue::Tuple(vec![addr.ip().to_string().into(), i64::from(addr.port()).into()]),
        Address::Unix(path) => PickleValue::String(path.to_string_lossy().into_owned()),
        Address::Abstract(name) => PickleValue::String(format!("\0{}", String::from_utf8_lossy(name))),
    }
}

/// A `multiprocessing.managers.Token`, as CPython pickles it (`__new__`, then its state).
fn token(typeid: &str, address: &Address, id: ObjectId) -> PickleValue {
    PickleValue::from(Object {
        class: "multiprocessing.managers.Token".into(),
        build: Build::New(Vec::new()),
        state: Some(PickleValue::Tuple(vec![typeid.into(), address_value(address), ident_of(id)])),
    })
}

/// Serves a connection whose first request, `first`, is CPython's.
pub(crate) fn serve(shared: &Shared, mut conn: Connection, first: Vec<u8>) {
    let request = match request_of(&first) {
        Ok(request) => request,
        Err(e) => {
            let _ = send_traceback(&mut conn, &format!("the request could not be read: {e}"));
            return;
        }
    };
    if request.name == "accept_connection" {
        if send(&mut conn, &tagged("#RETURN", PickleValue::None)).is_ok() {
            serve_channel(shared, conn);
        }
        return;
    }
    let stop = request.name == "shutdown";
    let reply = match server_request(shared, request) {
        Ok(value) => tagged("#RETURN", value),
        Err(raise) => failure(&raise),
    };
    let _ = send(&mut conn, &reply);
    if stop {
        stop_serving(shared);
    }
}

/// One of the requests to the server itself.
fn server_request(shared: &Shared, request: Request) -> Result<PickleValue, Raise> {
    let Request { name, mut args, .. } = request;
    match name.as_str() {
        "dummy" => Ok(PickleValue::None),
        "create" => {
            if args.positional.is_empty() {
                return Err(Raise::Remote("TypeError: create() missing the typeid".into()));
            }
            let typeid = match args.positional.remove(0) {
                PickleValue::String(typeid) => typeid,
                other => {
                    return Err(Raise::Remote(format!("TypeError: a typeid must be a str, not {}", other.type_name())));
                }
            };
            // The reference counted for the caller, which its proxy's `incref` then doubles and
            // its `decref` takes back, as with CPython's server.
            let (id, object) = shared.create(&typeid, args, None)?;
            Ok(PickleValue::Tuple(vec![ident_of(id), exposed_of(&object)]))
        }
        "incref" => {
            let id = id_of(&args.one("incref", "ident")?)?;
            shared.table().incref(id).map_err(|_| Raise::Remote(format!("KeyError: '{id:x}'")))?;
            Ok(PickleValue::None)
        }
        "decref" => {
            let id = id_of(&args.one("decref", "ident")?)?;
            let freed = {
                let mut table = shared.table();
                if !table.objects.contains_key(&id) {
                    return Err(Raise::Remote(format!("KeyError: '{id:x}'")));
                }
                table.decref(id)
            };
            drop(freed);
            Ok(PickleValue::None)
        }
        "number_of_objects" => Ok(PickleValue::from(shared.table().objects.len() as i64)),
        "debug_info" => {
            let table = shared.table();
            let mut ids: Vec<&ObjectId> = table.objects.keys().collect();
            ids.sort();
            let lines: Vec<String> = ids
                .into_iter()
                .map(|id| {
                    let entry = &table.objects[id];
                    let text: String = entry.object.repr().chars().take(75).collect();
                    format!("  {id:x}:       refcount={}\n    {text}", entry.refs)
                })
                .collect();
            Ok(PickleValue::String(lines.join("\n")))
        }
        "get_methods" => {
            let token = args.one("get_methods", "token")?;
            let ident = match &token {
                PickleValue::Object(object) => match &object.state {
                    Some(PickleValue::Tuple(state)) if state.len() == 3 => state[2].clone(),
                    _ => PickleValue::None,
                },
                _ => PickleValue::None,
            };
            let object = shared.table().get(id_of(&ident)?)?;
            Ok(exposed_of(&object))
        }
        "shutdown" => Ok(PickleValue::None),
        other => Err(Raise::Remote(format!("AssertionError: {other:?} unrecognized"))),
    }
}

/// Serves the method calls of one client thread's channel until it closes. Requests are read
/// whole with one receive each, and the next one met by a short spin when that pays
/// ([`super::channel`]).
fn serve_channel(shared: &Shared, mut conn: Connection) {
    let caller_id = shared.new_caller();
    // The objects this channel called (a lock it holds is released when it closes).
    let mut touched: HashSet<ObjectId> = HashSet::new();
    let mut reader = RequestReader::new(MAX_MESSAGE);
    loop {
        // The reader owns the channel's reads from here on (`conn` read nothing past the
        // `accept_connection` request).
        let next = conn.fd().and_then(|socket| reader.next(socket, &shared.activity));
        let reply = match next {
            Ok(Next::Request(bytes)) => match request_of(bytes) {
                Ok(request) => {
                    let gone = || conn.poll(Some(Duration::ZERO)).unwrap_or(true);
                    let caller = Caller { id: caller_id, gone: &gone, python: true };
                    call(shared, request, &caller, &mut touched)
                }
                Err(e) => failure(&Raise::Remote(format!("the request could not be read: {e}"))),
            },
            Ok(Next::TooLarge { len, limit }) => failure(&Raise::Remote(super::server::too_large(len, limit))),
            Ok(Next::Closed) | Err(_) => break,
        };
        if send(&mut conn, &reply).is_err() {
            break;
        }
    }
    let table = shared.table();
    for id in touched {
        if let Some(entry) = table.objects.get(&id) {
            entry.object.forget_caller(caller_id);
        }
    }
}

/// One method call on a channel, and its reply.
fn call(shared: &Shared, request: Request, caller: &Caller<'_>, touched: &mut HashSet<ObjectId>) -> PickleValue {
    let Request { ident, name, args } = request;
    let found =
        id_of(&ident).and_then(|id| shared.table().get(id).map(|object| (id, object)).map_err(|_| no_such_object(id)));
    let (id, object) = match found {
        Ok(found) => found,
        Err(raise) => return failure(&raise),
    };
    touched.insert(id);
    let fallback = matches!(name.as_str(), "#GETVALUE" | "__repr__" | "__str__");
    if !fallback && !object.exposed().contains(&name.as_str()) {
        return failure(&Raise::Remote(format!(
            "AttributeError: method {name:?} of {:?} object is not in exposed={:?}",
            object.typeid(),
            object.exposed()
        )));
    }
    match call_object(&object, &name, Input::Decoded(args), caller) {
        Ok(Outcome::Value(value)) => tagged("#RETURN", value),
        Ok(Outcome::Pickled(bytes)) => match decode(&bytes, Mode::Objects) {
            Ok(value) => tagged("#RETURN", value),
            Err(e) => failure(&Raise::Remote(format!("the result could not be read back: {e}"))),
        },
        Ok(Outcome::Object(new)) => {
            // A new object, with the one reference the client's `decref` takes back after its
            // proxy's `incref` (CPython's `create` for `method_to_typeid`).
            let typeid = new.typeid().to_string();
            let exposed = exposed_of(&new);
            let id = shared.table().add(new);
            tagged("#PROXY", PickleValue::Tuple(vec![exposed, token(&typeid, &shared.address, id)]))
        }
        Err(raise) => failure(&raise),
    }
}

/// The fuzz target's entry: one request as the first message of a connection, then (as a
/// channel's call) again. Never waits: calls see their caller gone.
pub(crate) fn fuzz(shared: &Shared, bytes: &[u8]) {
    let Ok(request) = request_of(bytes) else { return };
    if request.name == "shutdown" || request.name == "accept_connection" {
        return;
    }
    let name = request.name.clone();
    let _ = server_request(shared, request);
    if let Ok(request) = request_of(bytes) {
        let gone = || true;
        let caller = Caller { id: 1, gone: &gone, python: true };
        let mut touched = HashSet::new();
        let _ = call(shared, request, &caller, &mut touched);
    }
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::Object;

    fn request(
        ident: PickleValue,
        name: &str,
        args: Vec<PickleValue>,
        kwds: Vec<(PickleValue, PickleValue)>,
    ) -> Vec<u8> {
        let value = PickleValue::Tuple(vec![ident, name.into(), PickleValue::Tuple(args), PickleValue::Dict(kwds)]);
        encode(&value).unwrap()
    }

    /// Requests of every kind, then their bit flips and truncations: replies or errors, never a
    /// panic or a wait.
    #[test]
    fn requests_and_garbage_never_panic() {
        let shared = super::super::server::fuzz_shared_for_tests();
        let slice = PickleValue::from(Object::call("builtins.slice", vec![1.into(), PickleValue::None, 2.into()]));
        let range = PickleValue::from(Object::call("builtins.range", vec![5.into()]));
        let mut samples = vec![
            request(PickleValue::None, "create", vec!["dict".into()], vec![]),
            request(PickleValue::None, "create", vec!["list".into(), PickleValue::List(vec![1.into()])], vec![]),
            request(PickleValue::None, "create", vec!["Array".into(), "i".into(), (1i64 << 40).into()], vec![]),
            request(PickleValue::None, "create", vec!["Queue".into(), 1.into()], vec![]),
            request(PickleValue::None, "create", vec!["Barrier".into(), 2.into()], vec![]),
            request(PickleValue::None, "create", vec!["Condition".into()], vec![]),
            request(PickleValue::None, "incref", vec!["1".into()], vec![]),
            request(PickleValue::None, "decref", vec!["2".into()], vec![]),
            request(PickleValue::None, "debug_info", vec![], vec![]),
            request(PickleValue::None, "number_of_objects", vec![], vec![]),
            request("1".into(), "__setitem__", vec!["k".into(), 1.into()], vec![]),
            request("1".into(), "update", vec![PickleValue::Dict(vec![])], vec![("b".into(), 2.into())]),
            request("2".into(), "__getitem__", vec![slice], vec![]),
            request("2".into(), "extend", vec![range], vec![]),
            request("2".into(), "__imul__", vec![(1i64 << 40).into()], vec![]),
            request("4".into(), "get", vec![], vec![]),
            request("4".into(), "put", vec![1.into(), true.into(), 0.5.into()], vec![]),
            request("5".into(), "wait", vec![], vec![]),
            request("6".into(), "wait", vec![1.0.into()], vec![]),
            request("1".into(), "#GETVALUE", vec![], vec![]),
            request("1".into(), "__iter__", vec![], vec![]),
        ];
        let originals = samples.clone();
        for real in &originals {
            for i in 0..real.len() {
                let mut copy = real.clone();
                copy[i] ^= 0x01;
                samples.push(copy);
            }
            samples.push(real[..real.len() / 2].to_vec());
        }
        for sample in &samples {
            fuzz(&shared, sample);
        }
        assert!(shared.table().objects.len() > 3, "the requests made objects");
    }
}
