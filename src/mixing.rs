//! # Mixing Python and Rust
//!
//! A Python service handing work to Rust workers, Rust workers reporting to a Python dashboard, a
//! Rust server for Python clients: Python's `multiprocessing` and this crate speak the same wire
//! formats, and each side uses its own API unchanged.
//!
//! | what | Python side | Rust side | example |
//! |---|---|---|---|
//! | a connection | `multiprocessing.connection.Listener`/`Client`, `send`/`recv` | [`Listener`](crate::connection::Listener), [`connect`](crate::connection::connect), [`send_pickle`](crate::Connection::send_pickle)/[`recv_pickle`](crate::Connection::recv_pickle) | `examples/python_listener.rs` |
//! | a Rust server, Python clients | `BaseManager(address, authkey).connect()`, `register('get_queue')`, `m.dict()` | [`manager::Server`](crate::manager::Server), [`Server::register`](crate::manager::Server::register) | `examples/manager_for_python.rs` |
//! | a Python server, Rust clients | `BaseManager(...).get_server().serve_forever()` | [`manager::cpython::PyManager`](crate::manager::cpython::PyManager) | `examples/python_manager.rs` |
//! | shared memory | `shared_memory.SharedMemory(name)`, `ShareableList(name=...)` | [`SharedMemory`](crate::SharedMemory), [`ShareableList`](crate::ShareableList) | `examples/shareable_list.rs` |
//!
//! ## Values: Python's types and Rust's
//!
//! Values cross in CPython's pickle format ([`crate::pickle`]). A serde type maps to the Python
//! type of the same shape; [`PickleValue`](crate::pickle::PickleValue) holds any Python value as
//! it is, when the type is known only at run time.
//!
//! | Python | Rust |
//! |---|---|
//! | `None`, `bool`, `float`, `str`, `bytes` | `Option::None`/`()`, `bool`, `f64`, `String`, `serde_bytes::ByteBuf` |
//! | `int` (any size) | any integer type that holds the value (`u64`, `i128`, `u128`): out of range is an error naming value and type |
//! | `list`, `tuple` | `Vec<T>`; tuples and tuple structs |
//! | `set`, `frozenset` | `HashSet<T>`, `BTreeSet<T>` (a Rust set is a Python set) |
//! | `dict` | `HashMap<K, V>`, `BTreeMap<K, V>`; a struct is a dict of its fields; an enum `'Variant'` or `{'Variant': value}` |
//! | `datetime.timedelta` | `std::time::Duration` (not negative, whole microseconds) |
//! | `datetime.datetime` with a `tzinfo` | `std::time::SystemTime` (whole microseconds) |
//! | `datetime.date`, `time`, `datetime`; `decimal.Decimal`; `uuid.UUID` | [`PickleValue`](crate::pickle::PickleValue)'s variants; their ISO 8601 or decimal text as a `String` (what `chrono`, `rust_decimal` and `uuid` parse); a UUID as `u128` |
//! | `complex`, `bytearray` | `(f64, f64)`, `Vec<u8>`; or [`PickleValue`](crate::pickle::PickleValue)'s variants |
//! | an instance of a Python class, a function, a `Fraction`, a `range`, an enum member | refused with [`Error::Codec`](crate::Error::Codec) naming the class (`fractions.Fraction`): send plain data; an [`Object`](crate::pickle::Object) sends one to Python |
//!
//! Dict keys from Python compare as Python compares them in this crate's manager server: `1`,
//! `1.0` and `True` are one key, and a list is no key (`TypeError`), as in CPython's server.
//!
//! ## A manager for both
//!
//! One [`Server`](crate::manager::Server), on one address, serves this crate's proxies and
//! CPython's: after the authkey handshake, the first request tells the protocols apart. The
//! objects are the same, with CPython's methods, results and exceptions (`KeyError`,
//! `queue.Empty`, `threading.BrokenBarrierError` reach Python as themselves). Python clients need
//! the server to have an authkey. A Rust server answers a new Python connection at once, where
//! CPython's own server lets Python's first request wait up to 40 ms (Nagle's algorithm against
//! a delayed acknowledgement), so making a proxy costs a few milliseconds instead of a hundred.
//!
//! The owner of a server may fill objects before serving and name them, CPython's
//! `register('get_queue', callable=lambda: queue)`:
//!
//! ```
//! use multiproc::manager::Server;
//!
//! # fn main() -> multiproc::Result<()> {
//! let server = Server::bind::<()>("127.0.0.1:0".parse()?, Some(b"abracadabra"))?;
//! let queue = server.client().queue::<String>()?;
//! queue.put(&"hello".to_string())?;
//! server.register("get_queue", queue.object())?;
//! # let address = server.address().clone();
//! # std::thread::spawn(move || server.serve_forever());
//! # multiproc::manager::ManagerClient::connect(address, Some(b"abracadabra"))?.shutdown()?;
//! // server.serve_forever()?; and in Python:
//! //     class QueueManager(BaseManager): pass
//! //     QueueManager.register('get_queue')
//! //     m = QueueManager(address=('127.0.0.1', port), authkey=b'abracadabra'); m.connect()
//! //     m.get_queue().get()  ->  'hello'
//! # Ok(())
//! # }
//! ```
//!
//! What differs from CPython's server: functions cannot run in it (a `Barrier` with an `action`,
//! `sort(key=...)` and a `Condition` given another lock are refused with a `TypeError` that says
//! so); a lock held by a client that disconnects is released; requests larger than 64 MiB are
//! refused (the sender gets a `RemoteError` naming the limit, and its connection goes on).
//!
//! ## Shared memory that Python attaches
//!
//! A block has one owner, who unlinks it; the others only attach. A block created in Rust and
//! attached by Python: CPython before 3.13 registers every attached block with its resource
//! tracker, which unlinks it when that Python program ends, under the feet of the Rust owner
//! (gh-82300). In Python before 3.13, unregister it right after attaching:
//!
//! ```python
//! from multiprocessing import resource_tracker, shared_memory
//! shm = shared_memory.SharedMemory(name)
//! resource_tracker.unregister(shm._name, "shared_memory")
//! ```
//!
//! From Python 3.13, attach with `SharedMemory(name, track=False)`. A block created by Python
//! and attached in Rust stays Python's: Rust's attach never tracks it, and Python's tracker
//! unlinks it if Python's creator ends without doing so.
//!
//! ## Sizes
//!
//! A connection takes messages up to 1 GiB unless raised
//! ([`Connection::set_max_message_size`](crate::Connection::set_max_message_size)); a larger one
//! breaks the connection, which the sender sees close (the protocol has no way back for the
//! reason). The manager's limit is 64 MiB per request, and it tells the sender.
