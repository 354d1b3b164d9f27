//! The connection scenarios of seeds 000 and 003 (Pipe, Listener/Client), shared by the standalone
//! examples and the tour.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc::connection::{Address, Listener, ReadOnly, WriteOnly, connect_timeout};
use multiproc::{Connection, Process, Run};
use serde::{Deserialize, Serialize};

fn print_message_from_main(mut conn: Connection) -> multiproc::Result<()> {
    let message: String = conn.recv()?;
    println!("  I am the child process");
    println!("  message from the main process: {message}");
    Ok(())
}

/// Seed 000: the main process sends a message through a duplex pipe; the child prints it.
pub fn pipe_to_child() -> multiproc::Result<()> {
    let (mut conn1, conn2) = multiproc::pipe()?;
    let mut p1 = Process::new(print_message_from_main, (conn2,));
    p1.start()?;
    conn1.send("有点困了 (a little sleepy)")?;
    println!("  I am the main process");
    p1.join()?;
    Ok(())
}

fn say_hi(mut conn: Connection) -> multiproc::Result<()> {
    conn.send(&vec!["hi!! I am Python"])?;
    conn.close();
    Ok(())
}

/// Seed 003: the child sends a list through the pipe; the parent prints it.
pub fn pipe_from_child() -> multiproc::Result<()> {
    let (mut parent_conn, child_conn) = multiproc::pipe()?;
    let mut p = Process::new(say_hi, (child_conn,));
    p.start()?;
    println!("  {:?}", parent_conn.recv::<Vec<String>>()?);
    p.join()?;
    Ok(())
}

fn report_squares(mut out: Connection<WriteOnly>, n: u64) -> multiproc::Result<()> {
    for i in 1..=n {
        out.send(&(i, i * i))?;
    }
    Ok(())
}

/// Seed 003, `Pipe(duplex=False)`: only the child's end can send, only the parent's can receive.
/// (`reader.send(..)` does not compile: the direction is in the type.)
pub fn simplex_pipe() -> multiproc::Result<()> {
    let (mut reader, writer): (Connection<ReadOnly>, Connection<WriteOnly>) = multiproc::simplex_pipe()?;
    let mut p = Process::new(report_squares, (writer, 4u64));
    p.start()?;
    // The parent's copy of the writer went to the child; once the child exits, the reader sees
    // end of file.
    loop {
        match reader.recv::<(u64, u64)>() {
            Ok((i, square)) => println!("  {i}² = {square}"),
            Err(multiproc::Error::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    p.join()?;
    println!("  the writer closed: end of file");
    Ok(())
}

/// A request to [`UpperServer`].
#[derive(Serialize, Deserialize, Debug)]
pub enum Request {
    /// Upper-case this text.
    Upper(String),
    /// Stop serving.
    Stop,
}

/// A `Process` subclass (a [`Run`] type) that serves upper-casing requests over a duplex pipe
/// until it is told to stop; it answers how many it served.
#[derive(Serialize, Deserialize)]
pub struct UpperServer {
    conn: Connection,
}

impl Run for UpperServer {
    type Output = multiproc::Result<()>;
    fn run(mut self) -> multiproc::Result<()> {
        let mut served = 0u32;
        loop {
            match self.conn.recv::<Request>()? {
                Request::Upper(text) => {
                    self.conn.send(&text.to_uppercase())?;
                    served += 1;
                }
                Request::Stop => {
                    self.conn.send(&format!("served {served} requests, stopping"))?;
                    return Ok(());
                }
            }
        }
    }
}

pub fn upper_case_server() -> multiproc::Result<()> {
    let (mut client, server_end) = multiproc::pipe()?;
    let mut server = Process::from_run(UpperServer { conn: server_end });
    server.start()?;
    for word in ["hello", "multiproc", "ünïcode"] {
        client.send(&Request::Upper(word.into()))?;
        println!("  {word:?} -> {:?}", client.recv::<String>()?);
    }
    client.send(&Request::Stop)?;
    println!("  server: {}", client.recv::<String>()?);
    println!("  server exit code: {}", server.join()?);
    Ok(())
}

fn client_process(address: Address, key: Vec<u8>) -> multiproc::Result<()> {
    let mut conn = connect_timeout(&address, Some(&key), Duration::from_secs(10))?;
    conn.send(&format!("hello from process {}", std::process::id()))?;
    let reply: String = conn.recv()?;
    println!("  client got {reply:?}");
    Ok(())
}

fn intruder_process(address: Address, key: Vec<u8>) -> i32 {
    match connect_timeout(&address, Some(&key), Duration::from_secs(10)) {
        Ok(_) => 0,
        Err(e) => {
            println!("  the intruder's side: {e}");
            1
        }
    }
}

/// Listener and Client with an authkey, in two processes; then a client with the wrong key.
pub fn listener_and_client() -> multiproc::Result<()> {
    let key = b"secret password".to_vec();
    let mut listener = Listener::bind_temporary(Some(&key))?;
    println!("  listening at {}", listener.address());
    let mut client = Process::new(client_process, (listener.address().clone(), key));
    client.start()?;
    let mut conn = listener.accept_timeout(Duration::from_secs(10))?;
    let greeting: String = conn.recv()?;
    println!("  listener got {greeting:?}");
    conn.send(&"welcome")?;
    client.join()?;

    let mut intruder = Process::new(intruder_process, (listener.address().clone(), b"wrong key".to_vec()));
    intruder.start()?;
    match listener.accept_timeout(Duration::from_secs(10)) {
        Err(e @ multiproc::Error::Authentication(_)) => println!("  a client with the wrong key: {e}"),
        other => println!("  unexpected: {other:?}"),
    }
    println!("  the intruder's exit code: {}", intruder.join()?);
    Ok(())
}

/// A CPython Listener that answers pickled values: it echoes `[value, "from python"]` until it
/// receives None.
const PYTHON_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
with Listener(('127.0.0.1', 0), authkey=b'shared key') as listener:
    print('%s:%d' % listener.address, flush=True)
    with listener.accept() as conn:
        while (value := conn.recv()) is not None:
            conn.send([value, 'from python %d.%d' % sys.version_info[:2]])
"#;

/// A Rust client talking to a CPython `multiprocessing.connection.Listener` (needs `python3`;
/// skipped without it).
pub fn rust_client_python_listener() -> multiproc::Result<()> {
    let spawned = Command::new("python3").args(["-c", PYTHON_LISTENER]).stdout(Stdio::piped()).spawn();
    let Ok(mut python) = spawned else {
        println!("  python3 is not installed here; skipped");
        return Ok(());
    };
    let stdout = python.stdout.take();
    let exchange = || -> multiproc::Result<()> {
        let mut line = String::new();
        let stdout = stdout.ok_or_else(|| multiproc::Error::InvalidState("no stdout".into()))?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| multiproc::Error::Io { context: "read", source: e })?;
        let address: Address = line.trim().parse()?;
        println!("  CPython listens at {address}");
        let mut conn = connect_timeout(&address, Some(b"shared key"), Duration::from_secs(10))?;
        conn.set_timeout(Some(Duration::from_secs(10)));
        conn.send_pickle(&(42, "text", vec![1.5, 2.5]))?;
        println!("  python answered {:?}", conn.recv_pickle_value()?);
        conn.send_pickle(&std::collections::BTreeMap::from([("key", -7i64)]))?;
        println!("  python answered {:?}", conn.recv_pickle_value()?);
        conn.send_pickle(&())?;
        Ok(())
    };
    let outcome = exchange();
    if outcome.is_err() {
        // Whatever went wrong, the Python listener must not outlive the example.
        let _ = python.kill();
    }
    let status = python.wait().map_err(|e| multiproc::Error::Io { context: "wait for python3", source: e })?;
    outcome?;
    println!("  python3 exited: {status}");
    Ok(())
}
