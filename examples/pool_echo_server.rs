//! A TCP echo server handing connections to Pool(4) workers.
//!
//! Ported from Python:
//!
//! - `Pool(4)` TCP echo server (`server.accept()`, `apply_async(talk, conn)`) and `tcp_client.py`.
//!   The socket travels to the worker as a `Handle<TcpStream>`. Six client threads send one line
//!   each instead of reading `input()`; the server stops after six connections.
//!
//! Run it with `cargo run --example pool_echo_server`; the `tour` example runs it too.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use multiproc::Handle;
use multiproc::pool::Pool;

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

/// The echo server's task: talks to one client until it hangs up; returns the worker's pid.
fn talk(conn: Handle<TcpStream>) -> std::io::Result<u32> {
    let mut conn = conn.into_inner();
    let mut buf = [0u8; 1024];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(std::process::id());
        }
        conn.write_all(&buf[..n].to_ascii_uppercase())?;
    }
}

fn echo_client(port: u16, name: String) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.write_all(name.as_bytes())?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A TCP echo server handing each accepted connection to a `Pool(4)` worker with
/// `apply_async` (the socket travels to the worker as a `Handle`).
pub fn echo_server_with_a_pool() -> multiproc::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let port = listener.local_addr().map_err(io)?.port();
    let clients: Vec<_> =
        (0..6).map(|i| std::thread::spawn(move || echo_client(port, format!("client-{i}")))).collect();
    let pool = Pool::new(4)?;
    let mut served = Vec::new();
    for _ in 0..clients.len() {
        let (conn, _) = listener.accept().map_err(io)?;
        served.push(pool.apply_async(talk, (Handle::new(conn),))?);
    }
    for client in clients {
        let answer = client.join().expect("client thread").map_err(io)?;
        println!("  client got {answer}");
    }
    let mut pids: Vec<u32> = served.into_iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    pids.sort();
    pids.dedup();
    println!("  6 clients served by {} worker processes", pids.len());
    Ok(())
}

fn main() -> multiproc::Result<()> {
    echo_server_with_a_pool()
}
